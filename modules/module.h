// nn::Module: Flax Linen's module in C++. A module is an aggregate struct deriving from
// nn::Module<Derived> (CRTP); its public fields are its settings, so designated initializers play
// the role of dataclass fields and functools.partial. Its compact body is `call(...) const`;
// `module(args...)` runs `call` as a child of the module whose body is running. Variables live
// outside modules, in a Tree {"params": ..., "batch_stats": ...} that init creates and apply
// reads.
//
// Example:
//   struct MLP : nn::Module<MLP> {
//     int hidden = 32;
//     Tensor call(const Tensor& x) const {
//       Tensor h = nn::relu(nn::Dense{.features = hidden}(x));             // Dense_0
//       return nn::Dense{.features = 10}.named("head")(h);                  // head
//     }
//   };
//   Tree vars = MLP{}.init(random::key(0), x);            // {"params": {"Dense_0": ..., "head": ...}}
//   Tensor y = MLP{}.apply(vars, x);
//   auto [y2, updates] = model.apply_mutable(vars, {"batch_stats"}, x);          // BatchNorm
//   Tensor z = model.apply(vars, {.rngs = {{"dropout", key}}}, x);               // Dropout
//   Tensor g = AutoEncoder{}.apply(vars, &AutoEncoder::generate, latents);       // another method
//
// Naming follows Flax exactly: a child built inside a running body is named "<Class>_<n>" with
// one counter per class and per call of the parent, reserved at construction (so construction
// order decides), unless renamed with .named("x"); calling the parent again reuses the names (and
// so the variables). Copies of a child built in a body are the same child (`auto d = Dense{..};
// d(x); d(y);` shares one kernel). A module built outside any body (a setting of another module)
// is unnamed: it and each copy of it are separate modules, each named "<Class>_<n>" in the module
// that first calls it. nn::partial(module) is functools.partial: calling it builds a module.
//
// A module stored in a field of another module belongs to whoever was running when it was built
// (as in Flax, where Blk(d=Dense(4)) built in a compact method makes Dense_0 a child of the
// caller); one built outside any body is named in the module that calls it.
#pragma once
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "core/tree.h"
#include "modules/errors.h"
#include "modules/initializers.h"
#include "modules/rngs.h"
#include "modules/scope.h"

// `Dense{.features = 3}` leaves the Module<Dense> base to its default initializer. GCC (12, 13)
// warns "missing initializer for member 'Dense::<anonymous>'" for that under -Wextra, and a
// push/pop around this header does not help because the warning is issued where the module is
// built. Designated initializers never warn about omitted named fields, so switching the warning
// off for code that includes this header loses only the check of positional aggregate init.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif

namespace loom::nn {

/// Flax's capture_intermediates: `true` records the output of every module's call, a filter
/// (CaptureFilter: the module's type name and path) those it accepts. Each output is sown in
/// "intermediates" as `<module path>/__call__/<k>` for the k-th call ("__call__/0" for the
/// top-level module). Tensors and Trees are recorded, pairs and tuples of them as a dict
/// {"0": .., "1": ..}; calls returning anything else, and other methods (invoke, apply with a
/// method pointer), are not.
///   auto [y, state] = model.apply_mutable(vars, {}, {.capture_intermediates = true}, x);
///   Tensor h = state.at("intermediates/Dense_0/__call__/0").tensor();
struct CaptureIntermediates {
  CaptureIntermediates() = default;
  CaptureIntermediates(bool all)  // NOLINT: {.capture_intermediates = true}
      : filter(all ? CaptureFilter([](const std::string&, const std::string&) { return true; })
                   : CaptureFilter()) {}
  template <class F>
    requires std::is_invocable_r_v<bool, F, const std::string&, const std::string&>
  CaptureIntermediates(F f) : filter(std::move(f)) {}  // NOLINT: {.capture_intermediates = filter}
  CaptureFilter filter;  // empty: nothing recorded
};

/// Options of apply/apply_mutable: rng streams by kind, e.g. {.rngs = {{"dropout", key}}}, and
/// which calls to record (apply_mutable only: it returns "intermediates" with the others).
struct ApplyOptions {
  Rngs rngs = {};
  CaptureIntermediates capture_intermediates = {};
};

namespace detail {

template <class T>
std::string module_type_name() {
  if constexpr (requires { T::kModuleName; }) return std::string(T::kModuleName);
  else if constexpr (requires { T::module_name(); }) return std::string(T::module_name());
  else return type_name_from_signature(__PRETTY_FUNCTION__);
}

template <class T>
const std::string& cached_type_name() {
  static const std::string name = module_type_name<T>();
  return name;
}

template <class... A>
struct first_of {
  using type = void;
};
template <class F, class... R>
struct first_of<F, R...> {
  using type = F;
};

template <class... A>
constexpr bool leads_with_options() {
  if constexpr (sizeof...(A) == 0) return false;
  else return std::is_same_v<std::remove_cvref_t<typename first_of<A...>::type>, ApplyOptions>;
}

template <class... A>
constexpr bool leads_with_method() {
  if constexpr (sizeof...(A) == 0) return false;
  else return std::is_member_function_pointer_v<std::remove_cvref_t<typename first_of<A...>::type>>;
}

/// The device of the first Tensor argument (where init creates variables); the CPU otherwise.
template <class... A>
Device first_tensor_device(const A&... args) {
  Device d = Device::cpu();
  bool found = false;
  auto visit = [&](const auto& a) {
    if constexpr (std::is_same_v<std::remove_cvref_t<decltype(a)>, Tensor>)
      if (!found && a.defined()) {
        d = a.device();
        found = true;
      }
  };
  (visit(args), ...);
  return d;
}

/// Text for tabulate: "float32[2,3]" for a tensor, values for numbers and bools, "..." else.
template <class T>
std::string describe(const T& v) {
  using D = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<D, Tensor>) {
    if (!v.defined()) return "None";
    std::string s(dtype_name(v.dtype()));
    s += '[';
    for (size_t i = 0; i < v.shape().size(); ++i) {
      if (i) s += ',';
      s += std::to_string(v.shape()[i]);
    }
    s += ']';
    return s;
  } else if constexpr (std::is_same_v<D, bool>) {
    return v ? "true" : "false";
  } else if constexpr (std::is_arithmetic_v<D>) {
    return std::to_string(v);
  } else if constexpr (requires { std::get<0>(v); std::tuple_size<D>::value; }) {
    std::string s = "(";
    std::apply(
        [&](const auto&... e) {
          ((s += s.size() > 1 ? ", " : "", s += describe(e)), ...);
        },
        v);
    s += ')';
    return s;
  } else {
    return "...";
  }
}
template <class... A>
std::string describe_args(const A&... args) {
  std::string s;
  ((s += s.empty() ? "" : ", ", s += describe(args)), ...);
  return s;
}

/// Wraps one module call for the recorder (a no-op without one).
class RecordedCall {
 public:
  template <class... A>
  RecordedCall(const Scope& scope, const std::string& type, const A&... args) {
    CallRecorder* r = call_recorder();
    if (!r) return;
    recorder_ = r;
    index_ = r->records.size();
    r->records.push_back({scope.path(), type, describe_args(args...), "", r->depth++});
  }
  template <class Out>
  const Out& done(const Out& out) {
    if (recorder_) recorder_->records[index_].outputs = describe(out);
    return out;
  }
  ~RecordedCall() {
    if (recorder_) --recorder_->depth;
  }
  RecordedCall(const RecordedCall&) = delete;
  RecordedCall& operator=(const RecordedCall&) = delete;

 private:
  CallRecorder* recorder_ = nullptr;
  size_t index_ = 0;
};

/// Throws ApplyScopeInvalidVariablesStructureError for {"params": {"params": ...}} or a leaf.
void check_apply_variables(const Tree& variables);

/// A call's output as a tree for capture_intermediates; nullopt for types it does not record.
template <class Out>
std::optional<Tree> capture_tree(const Out& out) {
  if constexpr (std::is_same_v<Out, Tensor> || std::is_same_v<Out, Tree>) {
    return Tree(out);
  } else if constexpr (requires { std::tuple_size<Out>::value; }) {
    std::optional<Tree> all = Tree();
    std::apply(
        [&](const auto&... e) {
          auto add = [&](const auto& x) {
            std::optional<Tree> t = all ? capture_tree(x) : std::nullopt;
            if (t) all->insert(std::to_string(all->size()), *t);
            else all.reset();
          };
          (add(e), ...);
        },
        out);
    return all;
  } else {
    return std::nullopt;
  }
}

/// Sows `out` as the output of the call running in `scope` when the run's capture filter
/// accepts the module (capture_intermediates); returns `out`.
template <class Out>
const Out& captured(Scope& scope, const std::string& type, const Out& out) {
  const CaptureFilter& accept = scope.run().capture();
  if (accept && accept(type, scope.path_text()))
    if (std::optional<Tree> t = capture_tree(out)) scope.sow("intermediates", "__call__", *t);
  return out;
}

}  // namespace detail

template <class M>
class Partial;

namespace detail {
/// For lifted transforms: a block held in their `block` field is run by them, never called as
/// a child, so the auto-name it reserved when built in a body is given back.
struct SlotAccess {
  template <class M>
  static void give_back(const M& module) {
    module.slot_.give_back();
  }
};
}  // namespace detail

/// A variables dict from collections, as Python's {"params": params, "batch_stats": stats}:
///   Tensor y = model.apply(nn::variables({{"params", params}}), x);
inline Tree variables(std::initializer_list<std::pair<std::string, Tree>> collections) {
  Tree out;
  for (const auto& [name, tree] : collections) out.insert(name, tree);
  return out;
}

template <class Derived>
class Module {
 public:
  /// The class name used for auto-names ("Dense"): the unqualified C++ name, or
  /// `static constexpr std::string_view kModuleName` / `static std::string module_name()` when
  /// Derived declares one (lifted transforms: "ScanBlock", "CheckpointBlock").
  static const std::string& type_name() { return detail::cached_type_name<Derived>(); }

  // --- calling a module inside another module's body ------------------------------------------

  /// Runs `call(args...)` in this module's scope (named on first use). Throws
  /// CallCompactUnboundModuleError outside init/apply.
  template <class... A>
  auto operator()(A&&... args) const {
    detail::Scope& scope = slot_.bind();
    detail::FrameGuard frame(scope, self());
    if (!detail::call_recorder() && !scope.run().capture())
      return derived().call(std::forward<A>(args)...);
    detail::RecordedCall rec(scope, type_name(), args...);
    if constexpr (requires { Derived::kCapturesInsideSteps; })
      return rec.done(derived().call(std::forward<A>(args)...));
    else
      return detail::captured(scope, type_name(), rec.done(derived().call(std::forward<A>(args)...)));
  }

  /// Runs another method of this module in its scope: encoder.invoke(&Encoder::encode, x).
  template <class M, class... A>
  auto invoke(M method, A&&... args) const {
    static_assert(std::is_member_function_pointer_v<M>, "invoke needs a member function pointer");
    detail::Scope& scope = slot_.bind();
    detail::FrameGuard frame(scope, self());
    if (!detail::call_recorder()) return (derived().*method)(std::forward<A>(args)...);
    detail::RecordedCall rec(scope, type_name(), args...);
    return rec.done((derived().*method)(std::forward<A>(args)...));
  }

  /// A copy with an explicit name (Flax's name=...). The auto-name this module reserved when it
  /// was built is given back, so `Dense{}`, `Dense{}.named("latents")`, `Dense{}` are Dense_0,
  /// latents, Dense_1. Naming a child twice with the same name and type gives the same child
  /// (setup-style accessors: `Encoder encoder() const { return Encoder{}.named("encoder"); }`).
  Derived named(const std::string& name) const {
    Derived copy = derived();
    copy.slot_ = slot_.renamed(name);
    return copy;
  }

  /// Flax's module.name: the explicit name, or the auto-name this module holds in the running
  /// init/apply; "" for a module not named yet (built outside any body and not called).
  std::string name() const { return slot_.name(); }

  // --- inside the body -------------------------------------------------------------------------

  /// A parameter: created by `init(make_rng("params"), shape, dtype)` during init (every param
  /// consumes one "params" rng count, in creation order), read at apply after checking its shape
  /// (ScopeParamShapeError).
  Tensor param(const std::string& name, const Initializer& init, const Shape& shape,
               DType dtype = DType::F32) const {
    return scope("param").param(name, init, shape, dtype);
  }
  /// A variable of collection `col`, created with `init()` (no rng, as in Flax) when absent and
  /// the collection is mutable.
  Variable variable(const std::string& col, const std::string& name,
                    const std::function<Tensor()>& init = {}) const {
    return scope("variable").variable(col, name, init);
  }
  /// The same with an initializer and shape (called with key (0, 0): variables get no rng).
  Variable variable(const std::string& col, const std::string& name, const Initializer& init,
                    const Shape& shape, DType dtype = DType::F32) const {
    return variable(col, name, [&] { return init(random::Key{}, shape, dtype); });
  }
  /// A fresh key of stream `kind`: fold_in(rngs[kind], sha1(module path, counter)) as Flax.
  /// Falls back to "params" when `kind` was not given; InvalidRngError when neither exists.
  random::Key make_rng(const std::string& kind = "params") const {
    return scope("make_rng").make_rng(kind);
  }
  /// Appends `value` to the tuple `name` of `col` ({"0": v0, "1": v1, ...}); a no-op returning
  /// false when `col` is immutable (the default for "intermediates").
  bool sow(const std::string& col, const std::string& name, const Tensor& value) const {
    return scope("sow").sow(col, name, value);
  }
  bool is_initializing() const { return scope("is_initializing").run().initializing(); }
  /// True while tabulate records the calls or capture_intermediates keeps module outputs: a
  /// module that folds its submodules' results into one op (a residual added inside a product)
  /// then runs them one by one, so that each submodule's output is the one Flax would show.
  bool outputs_observed() const {
    return detail::call_recorder() || bool(scope("outputs_observed").run().capture());
  }
  bool has_variable(const std::string& col, const std::string& name) const {
    return scope("has_variable").has_variable(col, name);
  }
  bool has_rng(const std::string& kind) const {
    return scope("has_rng").run().rngs().contains(kind);
  }
  bool is_mutable_collection(const std::string& col) const {
    return scope("is_mutable_collection").run().is_mutable(col);
  }
  /// This module's path from the top-level module ({"Encoder_0", "Dense_1"}).
  std::vector<std::string> path() const { return scope("path").path(); }
  /// "/Encoder_0/Dense_1" ("/" for the top-level module), for messages.
  std::string path_text() const { return scope("path_text").path_text(); }

  // --- top level --------------------------------------------------------------------------------

  /// Runs `call(args...)` (or a method: init(rngs, &M::method, args...)) with empty variables
  /// and every collection but "intermediates" mutable; returns the variables.
  template <class... A>
  Tree init(const Rngs& rngs, A&&... args) const {
    return init_with_output(rngs, std::forward<A>(args)...).second;
  }
  template <class... A>
  auto init_with_output(const Rngs& rngs, A&&... args) const {
    detail::Run run(Tree(), rngs, Mutable::init_default(), true, type_name());
    run.set_device(detail::first_tensor_device(args...));
    auto out = run_top(run, std::forward<A>(args)...);
    return std::pair<decltype(out), Tree>{std::move(out), run.mutable_collections()};
  }

  /// Runs `call(args...)` (or apply(vars, &M::method, args...)) with nothing mutable.
  template <class... A>
    requires(!detail::leads_with_options<A...>())
  auto apply(const Tree& variables, A&&... args) const {
    return apply(variables, ApplyOptions{}, std::forward<A>(args)...);
  }
  template <class... A>
  auto apply(const Tree& variables, const ApplyOptions& options, A&&... args) const {
    detail::check_apply_variables(variables);
    LOOM_CHECK(!options.capture_intermediates.filter, ValueError, type_name(),
               ".apply: capture_intermediates records in \"intermediates\", which apply does not "
               "return; call apply_mutable (it returns the intermediates with the output)");
    detail::Run run(variables, options.rngs, Mutable::none(), false, type_name());
    run.set_device(detail::first_tensor_device(args...));
    return run_top(run, std::forward<A>(args)...);
  }

  /// As apply, with the collections `mutable_cols` allows writable; returns the output and all
  /// collections the filter allows (not only the changed ones), as Flax.
  template <class... A>
    requires(!detail::leads_with_options<A...>())
  auto apply_mutable(const Tree& variables, const Mutable& mutable_cols, A&&... args) const {
    return apply_mutable(variables, mutable_cols, ApplyOptions{}, std::forward<A>(args)...);
  }
  template <class... A>
  auto apply_mutable(const Tree& variables, const Mutable& mutable_cols,
                     const ApplyOptions& options, A&&... args) const {
    detail::check_apply_variables(variables);
    const CaptureFilter& capture = options.capture_intermediates.filter;
    // As Flax, capturing makes "intermediates" mutable.
    detail::Run run(variables, options.rngs,
                    capture ? mutable_cols.with("intermediates") : mutable_cols, false, type_name());
    run.set_capture(capture);
    run.set_device(detail::first_tensor_device(args...));
    auto out = run_top(run, std::forward<A>(args)...);
    return std::pair<decltype(out), Tree>{std::move(out), run.mutable_collections()};
  }

 private:
  const Derived& derived() const { return static_cast<const Derived&>(*this); }
  const void* self() const { return static_cast<const void*>(&derived()); }
  detail::Scope& scope(const char* what) const { return detail::scope_of(self(), what); }

  template <class... A>
  auto run_top(detail::Run& run, A&&... args) const {
    detail::RunGuard guard(run);
    detail::FrameGuard frame(run.root(), self());
    if constexpr (detail::leads_with_method<A...>()) {
      return call_method(std::forward<A>(args)...);
    } else {
      if (!detail::call_recorder() && !run.capture()) return derived().call(std::forward<A>(args)...);
      detail::RecordedCall rec(run.root(), type_name(), args...);
      return detail::captured(run.root(), type_name(),
                              rec.done(derived().call(std::forward<A>(args)...)));
    }
  }
  template <class M, class... A>
  auto call_method(M method, A&&... args) const {
    if (!detail::call_recorder()) return (derived().*method)(std::forward<A>(args)...);
    detail::RecordedCall rec(detail::current_run()->root(), type_name(), args...);
    return rec.done((derived().*method)(std::forward<A>(args)...));
  }

  template <class M>
  friend class Partial;
  friend struct detail::SlotAccess;

  detail::NameSlot slot_{detail::cached_type_name<Derived>()};
};

/// functools.partial for modules: preset settings from which a body builds modules. Calling it
/// builds a new module at that point (named then, like Python's norm() building a BatchNorm),
/// copying it builds nothing, so a Partial can be passed around and stored in fields.
///   auto norm = nn::partial(nn::BatchNorm{.momentum = 0.9, .epsilon = 1e-5});
///   y = norm()(y);                       // BatchNorm_0
///   auto last = norm();                  // BatchNorm_1, with a setting changed
///   last.scale_init = nn::initializers::zeros();
///   y = last(y);
///   r = norm.named("norm_proj")(r);      // norm(name="norm_proj")
template <class M>
class Partial {
 public:
  explicit Partial(const M& module) : config_(module) { config_.slot_ = module.slot_.unnamed(); }
  M operator()() const {
    M m = config_;
    m.slot_ = config_.slot_.instance();
    return m;
  }
  M named(const std::string& name) const { return config_.named(name); }
  /// The preset settings (change them to change every module built afterwards).
  M& config() { return config_; }
  const M& config() const { return config_; }

 private:
  M config_;
};

/// Partial<M>(module): the auto-name `module` reserved (if built in a body) is given back.
template <class M>
Partial<M> partial(const M& module) {
  return Partial<M>(module);
}

}  // namespace loom::nn
