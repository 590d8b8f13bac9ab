// Everything of loom::optim in one include: GradientTransformation and chain (transform.h),
// transformations (transforms.h), wrappers (wrappers.h), optimizers (optimizers.h), schedules
// (schedules.h), fused updates (fused.h), loss scaling (loss_scale.h) and the Optax losses
// (losses.h).
#pragma once
#include "optim/fused.h"
#include "optim/loss_scale.h"
#include "optim/losses.h"
#include "optim/optimizers.h"
#include "optim/schedules.h"
#include "optim/transform.h"
#include "optim/transforms.h"
#include "optim/wrappers.h"
