// The run-time side of the module system: one Run per init/apply call holds the variables, rng
// streams and mutability; a Scope per module path (persisting for the whole run) holds that
// module's rng counters, its children and the names reserved during its current call. Modules
// (modules/module.h) are plain configuration values; while a module's body runs, the
// thread-local frame stack says which Scope it works in.
//
// Users meet this file only through Variable (the handle variable() returns). Everything in
// nn::detail is the machinery behind nn::Module.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tree.h"
#include "modules/errors.h"
#include "modules/initializers.h"
#include "modules/rngs.h"

namespace loom::nn {

namespace detail {
class Scope;
}

/// Which module calls an apply records in "intermediates" (Flax's capture_intermediates): given
/// the module's type name ("Dense") and path ("/Encoder_0/Dense_1"; "/" for the top-level
/// module), true to record the output of its call.
using CaptureFilter = std::function<bool(const std::string& type, const std::string& path)>;

/// A handle to one variable of a collection (Flax's Variable): read with value(), write with
/// set_value() (ModifyScopeVariableError when the collection is immutable in this run). Valid
/// only while the init/apply that produced it runs.
class Variable {
 public:
  Variable(detail::Scope* scope, std::string collection, std::string name)
      : scope_(scope), collection_(std::move(collection)), name_(std::move(name)) {}
  Tensor value() const;
  void set_value(const Tensor& value) const;
  bool is_mutable() const;
  const std::string& collection() const { return collection_; }
  const std::string& name() const { return name_; }

 private:
  detail::Scope* scope_;
  std::string collection_, name_;
};

namespace detail {

/// One init/apply invocation. Nested runs (nn::scan's per-step bodies) get their own Run whose
/// root sits at `root_path` for messages and rng derivation.
class Run {
 public:
  Run(Tree variables, Rngs rngs, Mutable mutable_cols, bool initializing,
      std::string root_type = "", std::vector<std::string> root_path = {});
  ~Run();
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  uint64_t id() const { return id_; }
  bool initializing() const { return initializing_; }
  const Rngs& rngs() const { return rngs_; }
  const Mutable& mutable_cols() const { return mutable_; }
  bool is_mutable(const std::string& col) const { return mutable_.allows(col); }
  Scope& root() { return *root_; }
  /// Where new variables are created: the device of the first tensor passed to init/apply.
  Device device() const { return device_; }
  void set_device(Device d) { device_ = d; }
  Tree& variables() { return variables_; }
  const Tree& variables() const { return variables_; }
  /// The collections the mutability filter allows (what apply_mutable/init return).
  Tree mutable_collections() const;
  /// The calls whose outputs this run records in "intermediates" (empty: none).
  const CaptureFilter& capture() const { return capture_; }
  void set_capture(CaptureFilter filter) { capture_ = std::move(filter); }

  /// Rng counters by module path relative to the root ("" the root, "Dense_0", "a/b"): a scope
  /// created later at such a path starts from them (lifted transforms replay Flax's counters).
  using CounterMap = std::map<std::string, std::map<std::string, uint32_t>>;
  void seed_counters(const CounterMap& counters);
  const std::map<std::string, uint32_t>* seeded(const std::string& rel_key) const;
  CounterMap& seeds() { return seeds_; }

 private:
  uint64_t id_;
  Tree variables_;
  Rngs rngs_;
  Mutable mutable_;
  bool initializing_;
  Device device_ = Device::cpu();
  CounterMap seeds_;
  CaptureFilter capture_;
  std::unique_ptr<Scope> root_;
};

/// The module whose body is running and the scope it runs in.
struct Frame {
  Scope* scope;
  const void* module;
};

/// The run on this thread (null outside init/apply).
Run* current_run();
/// The innermost running module (null when none).
const Frame* current_frame();
/// The current frame, checked to belong to `module`: throws CallCompactUnboundModuleError
/// outside init/apply, and ModuleError when `module` is not the module whose body runs.
Scope& scope_of(const void* module, const char* what);

/// Makes `run` current (and hides frames of an enclosing run) for this object's lifetime.
class RunGuard {
 public:
  explicit RunGuard(Run& run);
  ~RunGuard();
  RunGuard(const RunGuard&) = delete;
  RunGuard& operator=(const RunGuard&) = delete;

 private:
  Run* previous_run_;
  std::vector<Frame> previous_frames_;
};

/// Pushes a frame for `module` running in `scope`; the outermost frame of a scope starts a new
/// call of that module (reservations and auto-name counters reset; rng counters persist).
class FrameGuard {
 public:
  FrameGuard(Scope& scope, const void* module);
  ~FrameGuard();
  FrameGuard(const FrameGuard&) = delete;
  FrameGuard& operator=(const FrameGuard&) = delete;

 private:
  Scope& scope_;
};

class Scope {
 public:
  Scope(Run& run, Scope* parent, std::string name, std::string type,
        std::vector<std::string> root_path = {});

  Run& run() const { return run_; }
  const std::string& name() const { return name_; }
  const std::string& type() const { return type_; }
  /// Module names from the top-level module ({"Encoder_0", "Dense_1"}).
  const std::vector<std::string>& path() const { return path_; }
  /// "/Encoder_0/Dense_1" ("/" for the top-level module), as Flax prints scope paths.
  std::string path_text() const;
  Scope* parent() const { return parent_; }
  /// Child scopes in creation order.
  const std::vector<Scope*>& children() const { return child_order_; }

  // --- naming, within the current call of this scope's module ---
  void begin_call();
  int active_calls = 0;
  /// Reserves "<type>_<n>" with the next n of this call (NameInUseError when an explicit name
  /// or a variable took it).
  std::string reserve_auto(const std::string& type);
  /// Gives back the last auto name of `type` when it is `name` (Module::named()).
  void release_auto(const std::string& name, const std::string& type);
  /// Reserves an explicit submodule name; the same name with the same type again shares it.
  void reserve_explicit(const std::string& name, const std::string& type);
  /// The child scope `name` (created on first use; the same object for the rest of the run).
  Scope& child(const std::string& name, const std::string& type);

  // --- variables ---
  bool has_variable(const std::string& col, const std::string& name) const;
  /// Null when absent.
  const Tensor* find_variable(const std::string& col, const std::string& name) const;
  /// Throws ModifyScopeVariableError when `col` is immutable in this run.
  void put_variable(const std::string& col, const std::string& name, const Tensor& value);
  Tensor param(const std::string& name, const Initializer& init, const Shape& shape, DType dtype);
  Variable variable(const std::string& col, const std::string& name,
                    const std::function<Tensor()>& init);
  random::Key make_rng(const std::string& kind);
  bool sow(const std::string& col, const std::string& name, const Tensor& value);
  /// sow for a tree of values (a call's outputs), kept as one element of the tuple.
  bool sow(const std::string& col, const std::string& name, const Tree& value);
  /// Counter of `kind` so far (for tests and lifted transforms).
  uint32_t rng_counter(const std::string& kind) const;
  /// Every stream's counter (lifted transforms start their inner scopes from these).
  std::map<std::string, uint32_t>& rng_counters() { return rng_counters_; }
  /// "a/b": the path inside the run ("" for the root).
  std::string rel_key() const;
  /// Counters of this scope ("") and of everything below it (relative paths), including seeds
  /// of scopes not created yet.
  Run::CounterMap counters_below() const;
  /// Sets them back: on existing scopes, else as seeds of the run.
  void set_counters_below(const Run::CounterMap& counters);
  /// This scope's node in collection `col` (null when absent).
  const Tree* subtree(const std::string& col) const { return collection_node(col); }
  /// Inserts every entry of `tree` under this scope in `col` (ModifyScopeVariableError when
  /// `col` is immutable).
  void put_subtree(const std::string& col, const Tree& tree);
  /// Sorts the keys of this scope's subtree in every collection, recursively. Flax's lifted
  /// transforms return their variables through JAX, which orders dict keys; so do loom's.
  void sort_subtrees();

 private:
  enum class Use { AutoModule, NamedModule, Variable };
  struct Reservation {
    Use use;
    std::string type;              // module type for modules
    std::set<std::string> cols;    // collections for variables
  };
  void reserve_variable(const std::string& name, const std::string& col, const char* what);
  Tree* collection_node(const std::string& col, bool create);
  const Tree* collection_node(const std::string& col) const;
  bool collection_empty(const std::string& col) const;

  Run& run_;
  Scope* parent_;
  std::string name_, type_;
  std::vector<std::string> path_;      // full module path (messages and rng suffix)
  std::vector<std::string> rel_path_;  // path inside run_.variables() (differs in nested runs)
  std::map<std::string, std::unique_ptr<Scope>> children_;
  std::vector<Scope*> child_order_;
  std::map<std::string, uint32_t> rng_counters_;
  std::map<std::string, int> cursor_;  // per-type auto-name counter of the current call
  std::map<std::string, Reservation> reserved_;
};

/// Identity and naming of a module value (the `slot_` member of nn::Module). A module built
/// while another module's body runs reserves its auto-name "<Type>_<n>" in that parent at once,
/// so construction order decides numbering (as in Flax); copies of it are the same child. A
/// module built outside any body is unnamed: it and each copy of it are separate modules, each
/// named when first called.
class NameSlot {
 public:
  explicit NameSlot(const std::string& type);
  NameSlot(const NameSlot& other);
  // A move keeps the identity and leaves the source usable (it shares the state).
  NameSlot(NameSlot&& other) noexcept : state_(other.state_) {}
  NameSlot& operator=(const NameSlot& other);
  NameSlot& operator=(NameSlot&& other) noexcept {
    state_ = other.state_;
    return *this;
  }
  ~NameSlot() = default;

  /// A slot carrying the explicit `name`, giving back the auto-name `this` reserved (if it is the
  /// last one of its type in the current call and the module was not called yet).
  NameSlot renamed(const std::string& name) const;
  /// Gives back the auto-name this slot reserved in the running body, if it is the last one of
  /// its type there and the module was not called; the module becomes unnamed.
  void give_back() const;
  /// An unnamed copy's slot (nn::partial), giving back the auto-name as renamed() does.
  NameSlot unnamed() const;
  /// A new module's slot, as if built now (Partial::operator()): reserves in the running body.
  NameSlot instance() const;
  /// The scope for calling this module now: binds it in the running parent on first use.
  Scope& bind() const;
  const std::string& type() const;
  /// The explicit name, or the auto-name reserved in the running init/apply ("" otherwise).
  std::string name() const;

 private:
  struct State {
    std::string type;
    std::string name;             // "" until named
    bool explicit_name = false;
    uint64_t run_id = 0;          // run in which name/parent/scope are valid
    Scope* parent = nullptr;      // where the name is reserved
    Scope* scope = nullptr;       // bound scope (after the first call)
  };
  NameSlot() = default;
  bool live(const State& s) const;
  std::shared_ptr<State> state_;
};

/// Records module calls for nn::tabulate: every call of a module (and the top-level call) while
/// a recorder is installed on this thread.
struct CallRecord {
  std::vector<std::string> path;
  std::string type;
  std::string inputs, outputs;
  int depth = 0;
};
class CallRecorder {
 public:
  CallRecorder();
  ~CallRecorder();
  CallRecorder(const CallRecorder&) = delete;
  CallRecorder& operator=(const CallRecorder&) = delete;
  std::vector<CallRecord> records;
  int depth = 0;

 private:
  CallRecorder* previous_;
};
/// The recorder of this thread, or null (the common case: one thread-local read per call).
CallRecorder* call_recorder();

/// `t` with the keys of every dict sorted, recursively.
Tree sorted_tree(const Tree& t);

/// The class name Flax would print for T: the unqualified name without template arguments,
/// unless T declares `static constexpr std::string_view kModuleName`.
std::string type_name_from_signature(std::string_view pretty_function);

}  // namespace detail
}  // namespace loom::nn
