# Generates quant_torch.f32 for tests/unit/test_quant_torch.c: an independent re-implementation of
# ten lowp schemes with PyTorch tensor ops (CUDA, H100) and third-party element casts (torch float8
# after clamping = saturating; ml_dtypes float6/float4). Partial blocks are zero-padded. Divisions
# are tensor/tensor (torch turns scalar/tensor into a reciprocal product, which rounds twice) and
# MX powers of two are taken in float64 (CUDA exp2f is not exact for subnormal results).
# Run on the GPU machine: OUT=<dir> /opt/torch/.venv/bin/python gen_torch.py
# Produced with torch 2.11.0+cu130, ml_dtypes 0.6.0 on an NVIDIA H100 80GB HBM3, 2026-11-22.
import torch as t,numpy as np,ml_dtypes as m,os
O=os.environ['OUT'];g=t.Generator().manual_seed(1);R,C=48,160
x=t.randn(R,C,generator=g)*t.exp2(t.randint(-8,9,(R,1),generator=g).float())
x[3]=0;x[5,7]=448.;x[6]*=1e-38;x[7,130:]=0;x[9,::7]*=50
F=(2-2**-23)*2.**127;d='cuda';x=x.float().to(d)
def q(n,b):return t.full_like(b,n)/b
def blk(x,b):
 p=(-x.shape[1])%b;return t.nn.functional.pad(x,(0,p)).reshape(x.shape[0],-1,b),p
def unb(y,p):
 y=y.reshape(y.shape[0],-1);return y[:,:y.shape[1]-p]
def e4(y):return y.clamp(-448,448).to(t.float8_e4m3fn).float()
def e5(y):return y.clamp(-57344,57344).to(t.float8_e5m2).float()
def ml(y,dt):return t.from_numpy(y.cpu().numpy().astype(dt).astype(np.float32)).to(d)
def L(dt):return lambda y:ml(y,dt)
def cur(a,M,pw=0):
 s=q(M,a);s=t.where((a==0)|~a.isfinite(),1.,s);s=t.where(s.isinf(),F,s)
 if pw:s=(s.view(t.int32)&-8388608).view(t.float32)
 return s
def fp(x,b,cast,M,pw=0):
 xb,p=blk(x,b);s=cur(xb.abs().amax(-1,keepdim=True),M,pw);return unb(cast(xb*s)*q(1.,s),p)
def ten(x,cast,M):
 s=cur(x.abs().amax(),M);return cast(x*s)*q(1.,s)
def mx(x,cast,emax):
 xb,p=blk(x,32);a=xb.abs().amax(-1,keepdim=True);se=t.frexp(a)[1]-1-emax
 se=t.where(a==0,-127,se).clamp(min=-127).double();return unb((cast((xb*t.exp2(-se)).float())*t.exp2(se)).float(),p)
def nv(x):
 ga=x.abs().amax();se=t.where(ga==0,1.,q(2688.,ga));xb,p=blk(x,16);a=xb.abs().amax(-1,keepdim=True)
 sd=e4((a/t.full_like(a,6.))*se);en=t.where(sd==0,0.,se/sd)
 return unb((ml(xb*en,m.float4_e2m1fn)*sd)/se,p)
S={'fp8-tensor':ten(x,e4,448.),'e5m2-tensor':ten(x,e5,57344.),'fp8-row':fp(x,C,e4,448.),
'fp8-block128':fp(x,128,e4,448.,1),'mxfp8':mx(x,e4,8),'mxfp8-e5m2':mx(x,e5,15),
'mxfp6-e2m3':mx(x,L(m.float6_e2m3fn),2),'mxfp6-e3m2':mx(x,L(m.float6_e3m2fn),4),
'mxfp4':mx(x,L(m.float4_e2m1fn),2),'nvfp4':nv(x)}
t.cat([x.reshape(-1)]+[v.reshape(-1) for v in S.values()]).cpu().numpy().tofile(O+'/quant_torch.f32')
print(t.__version__,m.__version__)
