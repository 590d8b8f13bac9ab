// NameSlot: how a module value gets its name and scope (see modules/scope.h), and the class
// names used for auto-names.
#include "modules/scope.h"

namespace loom::nn::detail {

// --- NameSlot -----------------------------------------------------------------------------------

bool NameSlot::live(const State& s) const {
  return current_run() && s.run_id == current_run()->id() && (s.parent || s.scope);
}

NameSlot::NameSlot(const std::string& type) : state_(std::make_shared<State>()) {
  state_->type = type;
  if (const Frame* f = current_frame()) {
    Scope* parent = f->scope;
    state_->name = parent->reserve_auto(type);
    state_->parent = parent;
    state_->run_id = current_run()->id();
  }
}

NameSlot::NameSlot(const NameSlot& other) {
  const State& s = *other.state_;
  if (live(s)) {  // a named child: every copy is that same child
    state_ = other.state_;
    return;
  }
  // A copy of an unnamed module is a new module, named when first called.
  state_ = std::make_shared<State>();
  state_->type = s.type;
  if (s.explicit_name) {
    state_->name = s.name;
    state_->explicit_name = true;
  }
}

NameSlot& NameSlot::operator=(const NameSlot& other) {
  if (this != &other) state_ = NameSlot(other).state_;
  return *this;
}

void NameSlot::give_back() const {
  State& s = *state_;
  if (live(s) && !s.explicit_name && !s.scope && s.parent) {
    s.parent->release_auto(s.name, s.type);
    s.parent = nullptr;  // the original becomes an unnamed module
    s.run_id = 0;
    s.name.clear();
  }
}

NameSlot NameSlot::renamed(const std::string& name) const {
  give_back();
  NameSlot out;
  out.state_ = std::make_shared<State>();
  out.state_->type = state_->type;
  out.state_->name = name;
  out.state_->explicit_name = true;
  if (const Frame* f = current_frame()) {
    Scope* parent = f->scope;
    parent->reserve_explicit(name, state_->type);
    out.state_->parent = parent;
    out.state_->run_id = current_run()->id();
  }
  return out;
}

NameSlot NameSlot::unnamed() const {
  give_back();
  NameSlot out;
  out.state_ = std::make_shared<State>();
  out.state_->type = state_->type;
  if (state_->explicit_name) {
    out.state_->name = state_->name;
    out.state_->explicit_name = true;
  }
  return out;
}

NameSlot NameSlot::instance() const {
  if (state_->explicit_name) return renamed(state_->name);
  return NameSlot(state_->type);  // reserves the next auto-name when a body runs
}

Scope& NameSlot::bind() const {
  State& s = *state_;
  LOOM_CHECK(current_frame(), nn::CallCompactUnboundModuleError,
             "Can't call compact methods on unbound modules: ", s.type,
             " was called outside init/apply. Create the variables with model.init(rngs, "
             "inputs...) and run the model with model.apply(variables, inputs...).");
  if (live(s) && s.scope) return *s.scope;
  if (!live(s)) {  // unnamed, or named in an earlier run: name it in the running parent now
    Scope* parent = current_frame()->scope;
    if (s.explicit_name) parent->reserve_explicit(s.name, s.type);
    else s.name = parent->reserve_auto(s.type);
    s.parent = parent;
    s.run_id = current_run()->id();
  }
  s.scope = &s.parent->child(s.name, s.type);
  return *s.scope;
}

const std::string& NameSlot::type() const { return state_->type; }

std::string NameSlot::name() const {
  return state_->explicit_name || live(*state_) ? state_->name : std::string();
}

// --- type names ---------------------------------------------------------------------------------

std::string type_name_from_signature(std::string_view f) {
  size_t start = f.find("T = ");
  if (start == std::string_view::npos) return std::string(f);
  start += 4;
  size_t end = start;
  int depth = 0;
  for (; end < f.size(); ++end) {
    char c = f[end];
    if (c == '<' || c == '(') ++depth;
    else if (c == '>' || c == ')') --depth;
    else if ((c == ';' || c == ']') && depth == 0) break;
  }
  std::string_view full = f.substr(start, end - start);
  // Keep what follows the last "::" outside template arguments and parameter lists (namespaces,
  // enclosing classes, functions of local classes), then drop the template arguments.
  size_t begin = 0;
  depth = 0;
  for (size_t i = 0; i + 1 < full.size(); ++i) {
    char c = full[i];
    if (c == '<' || c == '(') ++depth;
    else if (c == '>' || c == ')') --depth;
    else if (c == ':' && full[i + 1] == ':' && depth == 0) begin = i + 2;
  }
  full = full.substr(begin);
  size_t lt = full.find('<');
  if (lt != std::string_view::npos) full = full.substr(0, lt);
  return std::string(full);
}

}  // namespace loom::nn::detail
