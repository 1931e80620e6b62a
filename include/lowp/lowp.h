/* lowp: low-precision training in C. Include this one header for the whole public API. */
#ifndef LOWP_LOWP_H
#define LOWP_LOWP_H

#include "lowp/format.h"
#include "lowp/cuda.h"
#include "lowp/status.h"

#define LOWP_VERSION_MAJOR 0
#define LOWP_VERSION_MINOR 1
#define LOWP_VERSION_PATCH 0

#endif
