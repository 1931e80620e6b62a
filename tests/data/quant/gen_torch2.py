# Generates quant_torch2.f32 for tests/unit/test_quant_torch.c (130x160 input, then 9 outputs):
# fp8-block128x128, e4m3 16x16 pow2, nvfp4-2d, int8-row, int4-g128, int4 1x32, nf4 (argmin: ties to
# the lower code), mxfp8 with the rceil rule, mxfp4 with the ceil rule; re-implemented with PyTorch
# tensor ops on CUDA and torch/ml_dtypes element casts. Same conventions as gen_torch.py.
# Run on the GPU machine: OUT=<dir> /opt/torch/.venv/bin/python gen_torch2.py (writes q2.f32)
# Produced with torch 2.11.0+cu130, ml_dtypes 0.6.0 on an NVIDIA H100 80GB HBM3, 2026-11-22.
import torch as t,numpy as np,ml_dtypes as m,os
O=os.environ['OUT'];g=t.Generator().manual_seed(2);R,C=130,160
x=t.randn(R,C,generator=g)*t.exp2(t.randint(-8,9,(R,1),generator=g).float())
x[3]=0;x[6]*=1e-37;x[9,::7]*=50;x[20:36,16:32]=0;d='cuda';x=x.float().to(d)
F=(2-2**-23)*2.**127
def q(n,b):return t.full_like(b,n)/b
def P(x,br,bc):
 y=t.nn.functional.pad(x,(0,(-C)%bc,0,(-R)%br));s=y.shape
 return y.reshape(s[0]//br,br,s[1]//bc,bc).permute(0,2,1,3),s
def U(y,s):return y.permute(0,2,1,3).reshape(s)[:R,:C]
def am(b):return b.abs().amax((-1,-2),keepdim=True)
def e4(y):return y.clamp(-448,448).to(t.float8_e4m3fn).float()
def ml(y,dt):return t.from_numpy(y.cpu().numpy().astype(dt).astype(np.float32)).to(d)
def f4(y):return ml(y,m.float4_e2m1fn)
def f2(b):
 xb,s=P(x,b,b);a=am(xb);c=t.where(a==0,1.,q(448.,a));c=t.where(c.isinf(),F,c)
 c=(c.view(t.int32)&-8388608).view(t.float32);return U(e4(xb*c)*q(1.,c),s)
def it(b,M):
 xb,s=P(x,1,b);a=am(xb);c=t.where(a==0,1.,a/t.full_like(a,M));return U((xb*q(1.,c)).round().clamp(-M,M)*c,s)
def n2():
 se=q(2688.,x.abs().amax());xb,s=P(x,16,16);a=am(xb)
 sd=e4((a/t.full_like(a,6.))*se);en=t.where(sd==0,0.,se/sd);return U((f4(xb*en)*sd)/se,s)
N=t.tensor([-1,-.696192801,-.525073051,-.394917488,-.284441382,-.18477343,-.0910500363,0,.0795802996,.160930201,.246112302,.337915242,.440709829,.562617004,.722956836,1],device=d)
def nf():
 xb,s=P(x,1,64);a=am(xb);e=t.where(a==0,0.,q(1.,a));e=t.where(e.isinf(),F,e)
 i=((xb*e).unsqueeze(-1)-N).abs().argmin(-1);return U(N[i]*a,s)
def cl(v):
 f,e=t.frexp(v);return e-(f==.5).int()
def mx(cast,M,emax,rc):
 xb,s=P(x,1,32);a=am(xb);se=cl(a/t.full_like(a,M)) if rc else cl(a)-emax
 se=t.where(a==0,-127,se).clamp(min=-127).double();return U((cast((xb*t.exp2(-se)).float())*t.exp2(se)).float(),s)
S=[f2(128),f2(16),n2(),it(C,127.),it(128,7.),it(32,7.),nf(),mx(e4,448.,8,1),mx(f4,6.,2,0)]
t.cat([x.reshape(-1)]+[v.reshape(-1) for v in S]).cpu().numpy().tofile(O+'/q2.f32')
