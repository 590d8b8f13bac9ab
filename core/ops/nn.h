// The neural-network ops in one include: softmax family, normalisations, dropout, losses and
// dot-product attention.
#pragma once
#include "core/ops/attention.h"
#include "core/ops/dropout.h"
#include "core/ops/loss.h"
#include "core/ops/norm.h"
#include "core/ops/softmax.h"
