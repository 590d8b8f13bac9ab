#include "modules/scope.h"

#include <algorithm>
#include <atomic>

#include "core/memory.h"
#include "modules/sha1.h"

namespace loom::nn {

Tensor Variable::value() const {
  const Tensor* v = scope_->find_variable(collection_, name_);
  LOOM_CHECK(v, nn::ScopeVariableNotFoundError, "No Variable named \"", name_, "\" for collection \"",
             collection_, "\" exists in \"", scope_->path_text(), "\".");
  return *v;
}

void Variable::set_value(const Tensor& value) const {
  scope_->put_variable(collection_, name_, value);
}

bool Variable::is_mutable() const { return scope_->run().is_mutable(collection_); }

namespace detail {
namespace {

thread_local Run* g_run = nullptr;
thread_local std::vector<Frame> g_frames;
thread_local CallRecorder* g_recorder = nullptr;
std::atomic<uint64_t> g_next_run_id{1};

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out;
}

std::string module_text(const Scope& s) {
  return loom::detail::cat(s.path_text(), s.type().empty() ? "" : " (" + s.type() + ")");
}

[[noreturn]] void name_in_use(const char* what, const std::string& name, const Scope& s,
                              const std::string& why) {
  LOOM_THROW(nn::NameInUseError, "Could not create ", what, " \"", name, "\" in Module ",
             module_text(s), ": Name in use (", why,
             "). Give it another name with .named(\"...\"), or reuse the first module object "
             "to share its variables.");
}

/// Flax encodes the rng counter as its minimal big-endian bytes (1 -> "\x01").
std::string counter_bytes(uint32_t n) {
  std::string out;
  for (int shift = 24; shift >= 0; shift -= 8)
    if (n >> shift || !out.empty()) out += char((n >> shift) & 0xff);
  return out;
}

}  // namespace

// --- Run ----------------------------------------------------------------------------------------

Run::Run(Tree variables, Rngs rngs, Mutable mutable_cols, bool initializing,
         std::string root_type, std::vector<std::string> root_path)
    : id_(g_next_run_id++),
      variables_(std::move(variables)),
      rngs_(std::move(rngs)),
      mutable_(std::move(mutable_cols)),
      initializing_(initializing) {
  root_ = std::make_unique<Scope>(*this, nullptr, "", std::move(root_type), std::move(root_path));
}

Run::~Run() = default;

Tree Run::mutable_collections() const {
  Tree out;
  if (variables_.is_leaf()) return out;
  for (const auto& [col, tree] : variables_.items())
    if (mutable_.allows(col)) out.insert(col, tree);
  return out;
}

void Run::seed_counters(const CounterMap& counters) {
  for (const auto& [k, v] : counters) seeds_[k] = v;
  if (auto it = counters.find(""); it != counters.end()) root_->rng_counters() = it->second;
}

const std::map<std::string, uint32_t>* Run::seeded(const std::string& rel_key) const {
  auto it = seeds_.find(rel_key);
  return it == seeds_.end() ? nullptr : &it->second;
}

Run* current_run() { return g_run; }

const Frame* current_frame() { return g_frames.empty() ? nullptr : &g_frames.back(); }

namespace {
// An allocation trace (core/memory.h) names where a tensor was made by the module being applied.
std::string module_path_for_trace() {
  return g_frames.empty() ? std::string() : g_frames.back().scope->path_text();
}
[[maybe_unused]] const bool trace_scope_installed = (set_allocation_scope(&module_path_for_trace), true);
}  // namespace

Scope& scope_of(const void* module, const char* what) {
  LOOM_CHECK(g_run && !g_frames.empty(), nn::CallCompactUnboundModuleError,
             "Can't call compact methods on unbound modules: ", what,
             " was used outside init/apply. Create the variables with model.init(rngs, inputs...) "
             "and run the model with model.apply(variables, inputs...).");
  const Frame& top = g_frames.back();
  LOOM_CHECK(top.module == module, nn::ModuleError, what, " was called on a module that is not the one "
             "running (", module_text(*top.scope), " is); a module may only create or read its "
             "own variables. Call the child (child(x) or child.invoke(&Child::method, x)) and let "
             "its body do it.");
  return *top.scope;
}

RunGuard::RunGuard(Run& run) : previous_run_(g_run), previous_frames_(std::move(g_frames)) {
  g_frames.clear();
  g_run = &run;
}

RunGuard::~RunGuard() {
  g_run = previous_run_;
  g_frames = std::move(previous_frames_);
}

FrameGuard::FrameGuard(Scope& scope, const void* module) : scope_(scope) {
  if (scope.active_calls == 0) scope.begin_call();
  ++scope.active_calls;
  g_frames.push_back({&scope, module});
}

FrameGuard::~FrameGuard() {
  g_frames.pop_back();
  --scope_.active_calls;
}

CallRecorder::CallRecorder() : previous_(g_recorder) { g_recorder = this; }
CallRecorder::~CallRecorder() { g_recorder = previous_; }
CallRecorder* call_recorder() { return g_recorder; }


// --- Scope: naming ------------------------------------------------------------------------------

Scope::Scope(Run& run, Scope* parent, std::string name, std::string type,
             std::vector<std::string> root_path)
    : run_(run), parent_(parent), name_(std::move(name)), type_(std::move(type)) {
  if (parent) {
    path_ = parent->path_;
    path_.push_back(name_);
    rel_path_ = parent->rel_path_;
    rel_path_.push_back(name_);
  } else {
    path_ = std::move(root_path);
  }
  if (const auto* seed = run_.seeded(rel_key())) rng_counters_ = *seed;
}

std::string Scope::rel_key() const {
  std::string k;
  for (const auto& p : rel_path_) {
    if (!k.empty()) k += '/';
    k += p;
  }
  return k;
}

Run::CounterMap Scope::counters_below() const {
  Run::CounterMap out;
  std::string base = rel_key();
  for (const auto& [k, v] : run_.seeds()) {
    if (base.empty()) out[k] = v;
    else if (k == base) out[""] = v;
    else if (k.size() > base.size() && k.compare(0, base.size(), base) == 0 && k[base.size()] == '/')
      out[k.substr(base.size() + 1)] = v;
  }
  // Existing scopes: their live counters win over seeds.
  std::vector<std::pair<const Scope*, std::string>> todo{{this, ""}};
  while (!todo.empty()) {
    auto [s, rel] = todo.back();
    todo.pop_back();
    if (!s->rng_counters_.empty() || out.count(rel)) out[rel] = s->rng_counters_;
    for (const Scope* c : s->child_order_)
      todo.push_back({c, rel.empty() ? c->name_ : rel + "/" + c->name_});
  }
  return out;
}

void Scope::set_counters_below(const Run::CounterMap& counters) {
  std::string base = rel_key();
  for (const auto& [rel, v] : counters) {
    Scope* s = this;
    size_t start = 0;
    while (s && start < rel.size()) {
      size_t slash = rel.find('/', start);
      std::string part = rel.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      auto it = s->children_.find(part);
      s = it == s->children_.end() ? nullptr : it->second.get();
      start = slash == std::string::npos ? rel.size() : slash + 1;
    }
    if (s) s->rng_counters_ = v;
    else run_.seeds()[base.empty() ? rel : (rel.empty() ? base : base + "/" + rel)] = v;
  }
}

std::string Scope::path_text() const {
  std::string out;
  for (const auto& p : path_) out += "/" + p;
  return out.empty() ? "/" : out;
}

void Scope::begin_call() {
  cursor_.clear();
  reserved_.clear();
}

std::string Scope::reserve_auto(const std::string& type) {
  int n = cursor_[type]++;
  std::string name = type + "_" + std::to_string(n);
  auto it = reserved_.find(name);
  if (it != reserved_.end())
    name_in_use("submodule", name, *this,
                it->second.use == Use::Variable ? "a variable has this name"
                                                : "an explicitly named submodule has this name");
  reserved_[name] = {Use::AutoModule, type, {}};
  return name;
}

void Scope::release_auto(const std::string& name, const std::string& type) {
  auto c = cursor_.find(type);
  if (c == cursor_.end() || c->second == 0) return;
  if (name != type + "_" + std::to_string(c->second - 1)) return;
  auto it = reserved_.find(name);
  if (it == reserved_.end() || it->second.use != Use::AutoModule) return;
  reserved_.erase(it);
  --c->second;
}

void Scope::reserve_explicit(const std::string& name, const std::string& type) {
  LOOM_CHECK(!name.empty() && name.find('/') == std::string::npos, ValueError,
             "named(\"", name, "\"): a module name must be non-empty and may not contain '/' (in ",
             module_text(*this), ")");
  auto it = reserved_.find(name);
  if (it == reserved_.end()) {
    reserved_[name] = {Use::NamedModule, type, {}};
    return;
  }
  const Reservation& r = it->second;
  if (r.use == Use::NamedModule && r.type == type) return;  // the same setup-style child again
  if (r.use == Use::Variable) name_in_use("submodule", name, *this, "a variable has this name");
  name_in_use("submodule", name, *this,
              r.use == Use::AutoModule ? "an auto-named " + r.type + " has this name"
                                       : "a " + r.type + " has this name");
}

void Scope::reserve_variable(const std::string& name, const std::string& col, const char* what) {
  LOOM_CHECK(!name.empty() && name.find('/') == std::string::npos, ValueError, what, " \"", name,
             "\" in ", module_text(*this), ": names must be non-empty and may not contain '/'");
  auto it = reserved_.find(name);
  if (it == reserved_.end()) {
    reserved_[name] = {Use::Variable, "", {col}};
    return;
  }
  Reservation& r = it->second;
  if (r.use != Use::Variable) name_in_use(what, name, *this, "a submodule " + r.type + " has this name");
  // Flax allows one name in several collections, but not twice in one collection per call.
  if (r.cols.count(col))
    name_in_use(what, name, *this, "already declared in collection \"" + col + "\" in this call");
  r.cols.insert(col);
}

Scope& Scope::child(const std::string& name, const std::string& type) {
  auto it = children_.find(name);
  if (it != children_.end()) {
    if (it->second->type_ != type)
      name_in_use("submodule", name, *this, "a " + it->second->type_ + " was created under it");
    return *it->second;
  }
  auto s = std::make_unique<Scope>(run_, this, name, type);
  Scope& ref = *s;
  children_.emplace(name, std::move(s));
  child_order_.push_back(&ref);
  return ref;
}

// --- Scope: variables ---------------------------------------------------------------------------

const Tree* Scope::collection_node(const std::string& col) const {
  const Tree& vars = run_.variables();
  if (!vars.is_dict() || !vars.contains(col)) return nullptr;
  const Tree* node = &vars[col];
  for (const auto& part : rel_path_) {
    if (!node->is_dict() || !node->contains(part)) return nullptr;
    node = &(*node)[part];
  }
  return node->is_dict() ? node : nullptr;
}

Tree* Scope::collection_node(const std::string& col, bool create) {
  Tree& vars = run_.variables();
  if (!create && !vars.contains(col)) return nullptr;
  Tree* node = &vars[col];
  for (const auto& part : rel_path_) {
    if (!create && !node->contains(part)) return nullptr;
    node = &(*node)[part];
  }
  return node;
}

bool Scope::collection_empty(const std::string& col) const {
  const Tree& vars = run_.variables();
  return !vars.is_dict() || !vars.contains(col) || vars[col].empty();
}

bool Scope::has_variable(const std::string& col, const std::string& name) const {
  const Tree* node = collection_node(col);
  return node && node->contains(name);
}

const Tensor* Scope::find_variable(const std::string& col, const std::string& name) const {
  const Tree* node = collection_node(col);
  if (!node || !node->contains(name)) return nullptr;
  const Tree& v = (*node)[name];
  return v.is_leaf() ? &v.tensor() : nullptr;
}

void Scope::put_variable(const std::string& col, const std::string& name, const Tensor& value) {
  LOOM_CHECK(run_.is_mutable(col), nn::ModifyScopeVariableError, "Cannot update variable \"", name,
             "\" in \"", path_text(), "\" because collection \"", col,
             "\" is immutable. Make it mutable: model.apply_mutable(variables, {\"", col,
             "\"}, inputs...) returns the output and the updated collections (BatchNorm: or run "
             "it in evaluation mode, use_running_average = true).");
  collection_node(col, true)->insert(name, Tree(value));
}

void Scope::put_subtree(const std::string& col, const Tree& tree) {
  LOOM_CHECK(run_.is_mutable(col), nn::ModifyScopeVariableError, "Cannot update collection \"",
             col, "\" in \"", path_text(), "\" because it is immutable. Make it mutable: "
             "model.apply_mutable(variables, {\"", col, "\"}, inputs...).");
  Tree* node = collection_node(col, true);
  for (const auto& [k, v] : tree.items()) node->insert(k, v);
}

Tree sorted_tree(const Tree& t) {
  if (t.is_leaf()) return t;
  std::vector<std::string> keys = t.keys();
  std::sort(keys.begin(), keys.end());
  Tree out;
  for (const auto& k : keys) out.insert(k, sorted_tree(t[k]));
  return out;
}

void Scope::sort_subtrees() {
  if (!run_.variables().is_dict()) return;
  for (const auto& col : run_.variables().keys()) {
    Tree* node = collection_node(col, false);
    if (node && node->is_dict() && !node->empty()) *node = sorted_tree(*node);
  }
}

Tensor Scope::param(const std::string& name, const Initializer& init, const Shape& shape,
                    DType dtype) {
  reserve_variable(name, "params", "param");
  if (const Tensor* v = find_variable("params", name)) {
    LOOM_CHECK(v->shape() == shape, nn::ScopeParamShapeError, "For parameter \"", name, "\" in \"",
               path_text(), "\", the given initializer is expected to generate shape ",
               shape_str(shape), ", but the existing parameter it received has shape ",
               shape_str(v->shape()),
               ". The inputs or the module's settings differ from those at init: re-run init "
               "with inputs of the new shape, or apply with matching inputs.");
    return *v;
  }
  if (!run_.is_mutable("params")) {
    if (collection_empty("params")) {
      std::string keys = run_.variables().is_dict() ? joined(run_.variables().keys()) : "";
      LOOM_THROW(nn::ScopeCollectionNotFound, "Tried to access \"", name,
                 "\" from collection \"params\" in \"", path_text(),
                 "\" but the collection is empty. apply() takes all variables, e.g. the Tree init "
                 "returned ({\"params\": ...}); if you passed the params alone, wrap them: Tree "
                 "vars; vars.insert(\"params\", params). (Top-level keys given: ",
                 keys.empty() ? "none" : keys, ")");
    }
    const Tree* here = collection_node("params");
    LOOM_THROW(nn::ScopeParamNotFoundError, "Could not find parameter named \"", name,
               "\" in scope \"", path_text(), "\". The variables were not made by this model's "
               "init (or a submodule's name changed); params here: ",
               here && !here->empty() ? joined(here->keys()) : "none");
  }
  Tensor value = init(make_rng("params"), shape, dtype);
  LOOM_CHECK(value.shape() == shape, ShapeError, "param \"", name, "\" in \"", path_text(),
             "\": the initializer returned shape ", shape_str(value.shape()), " for shape ",
             shape_str(shape));
  if (value.device() != run_.device()) value = value.to(run_.device());
  put_variable("params", name, value);
  return value;
}

Variable Scope::variable(const std::string& col, const std::string& name,
                         const std::function<Tensor()>& init) {
  reserve_variable(name, col, "variable");
  if (!find_variable(col, name)) {
    if (!run_.is_mutable(col) || !init) {
      if (collection_empty(col))
        LOOM_THROW(nn::ScopeCollectionNotFound, "Tried to access \"", name, "\" from collection \"",
                   col, "\" in \"", path_text(),
                   "\" but the collection is empty. Pass the variables init returned (they "
                   "include \"", col, "\"), or make the collection mutable so it can be created: "
                   "apply_mutable(variables, {\"", col, "\"}, ...).");
      LOOM_THROW(nn::ScopeVariableNotFoundError, "No Variable named \"", name, "\" for collection \"",
                 col, "\" exists in \"", path_text(),
                 "\". Make the collection mutable to create it: apply_mutable(variables, {\"", col,
                 "\"}, ...).");
    }
    Tensor value = init();
    if (value.device() != run_.device()) value = value.to(run_.device());
    put_variable(col, name, value);
  }
  return Variable(this, col, name);
}

random::Key Scope::make_rng(const std::string& kind) {
  std::string stream = kind;
  if (!run_.rngs().contains(stream)) {
    // Flax falls back to the params stream (so init(key) also feeds dropout).
    LOOM_CHECK(run_.rngs().contains("params"), nn::InvalidRngError, path_text(),
               " needs PRNG for \"", kind, "\". Pass one: model.apply(variables, {.rngs = {{\"",
               kind, "\", key}}}, inputs...) (init: {{\"params\", k1}, {\"", kind,
               "\", k2}}), or make the module deterministic.");
    stream = "params";
  }
  uint32_t counter = ++rng_counters_[stream];
  Sha1 h;
  for (const auto& part : path_) h.update(part);
  h.update(counter_bytes(counter));
  return random::fold_in(run_.rngs().at(stream), h.digest_prefix32());
}

uint32_t Scope::rng_counter(const std::string& kind) const {
  auto it = rng_counters_.find(kind);
  return it == rng_counters_.end() ? 0 : it->second;
}

bool Scope::sow(const std::string& col, const std::string& name, const Tensor& value) {
  return sow(col, name, Tree(value));
}

bool Scope::sow(const std::string& col, const std::string& name, const Tree& value) {
  if (!run_.is_mutable(col)) return false;
  const Tree* node = collection_node(col);
  if (!node || !node->contains(name)) reserve_variable(name, col, "variable");
  Tree* dir = collection_node(col, true);
  Tree& tuple = (*dir)[name];
  LOOM_CHECK(tuple.is_dict(), ValueError, "sow \"", name, "\" in \"", path_text(),
             "\": collection \"", col, "\" holds a plain variable under this name");
  tuple.insert(std::to_string(tuple.size()), value);
  return true;
}

}  // namespace detail
}  // namespace loom::nn

namespace loom::nn::detail {

void check_apply_variables(const Tree& variables) {
  LOOM_CHECK(variables.is_dict(), nn::ApplyScopeInvalidVariablesStructureError,
             "apply() takes the variables as a dict of collections ({\"params\": ...}), got a "
             "single tensor of shape ", shape_str(variables.tensor().shape()));
  LOOM_CHECK(!(variables.contains("params") && variables["params"].is_dict() &&
               variables["params"].contains("params")),
             nn::ApplyScopeInvalidVariablesStructureError,
             "Expect the `variables` (first argument) passed to apply() to be a dict with the "
             "structure {\"params\": ...}, but got a dict with an extra params layer, i.e. "
             "{\"params\": {\"params\": ...}}. You should instead pass in your dict's "
             "[\"params\"].");
}

}  // namespace loom::nn::detail
