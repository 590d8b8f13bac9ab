// The whole public API of loom's core in one include.
#pragma once
#include "core/autodiff.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/tensor.h"
#include "core/tree.h"
