/* lowp: low-precision training in C. Include this one header for the whole public API. */
#ifndef LOWP_LOWP_H
#define LOWP_LOWP_H

#include "lowp/cuda.h"
#include "lowp/cuda_quant.h"
#include "lowp/data.h"
#include "lowp/dist.h"
#include "lowp/format.h"
#include "lowp/memory.h"
#include "lowp/model.h"
#include "lowp/optim.h"
#include "lowp/plot.h"
#include "lowp/ptq.h"
#include "lowp/quant.h"
#include "lowp/recipe.h"
#include "lowp/safetensors.h"
#include "lowp/scaler.h"
#include "lowp/status.h"
#include "lowp/train.h"

#define LOWP_VERSION_MAJOR 0
#define LOWP_VERSION_MINOR 1
#define LOWP_VERSION_PATCH 0

#endif
