// Module-system errors, mirroring flax.errors: one class per mistake, each message naming the
// module path ("/Encoder_0/Dense_1", "/" for the top-level module) and saying what to do.
// All derive from nn::ModuleError (itself a loom::Error), so `catch (const loom::Error&)` sees
// them too.
#pragma once
#include <string>

#include "core/error.h"

namespace loom::nn {

class ModuleError : public Error {
 public:
  using Error::Error;
};

/// make_rng(kind) found no rng of that kind (and no "params" rng to fall back to), e.g. Dropout
/// applied without rngs {"dropout": key}.
class InvalidRngError : public ModuleError { using ModuleError::ModuleError; };
/// param(name) at apply time, but the params collection has no such entry at this path.
class ScopeParamNotFoundError : public ModuleError { using ModuleError::ModuleError; };
/// A variable was read from a collection that is empty (apply(params) instead of
/// apply({"params": params}), or a collection left out of the variables).
class ScopeCollectionNotFound : public ModuleError { using ModuleError::ModuleError; };
/// variable(col, name) without an initializer, absent from an immutable non-empty collection.
class ScopeVariableNotFoundError : public ModuleError { using ModuleError::ModuleError; };
/// A variable of an immutable collection was written (BatchNorm in training mode without
/// mutable batch_stats).
class ModifyScopeVariableError : public ModuleError { using ModuleError::ModuleError; };
/// The stored parameter's shape differs from what the initializer would create now (the input
/// shape changed between init and apply).
class ScopeParamShapeError : public ModuleError { using ModuleError::ModuleError; };
/// Two submodules, or a submodule and a param/variable, claim the same name in one module.
class NameInUseError : public ModuleError { using ModuleError::ModuleError; };
/// A module's body (param, make_rng, a child call...) ran outside init/apply.
class CallCompactUnboundModuleError : public ModuleError { using ModuleError::ModuleError; };
/// apply() got {"params": {"params": ...}}.
class ApplyScopeInvalidVariablesStructureError : public ModuleError {
  using ModuleError::ModuleError;
};

}  // namespace loom::nn
