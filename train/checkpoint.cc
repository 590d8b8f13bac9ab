#include "train/checkpoint.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>

#include "core/shape.h"
#include "train/io/atomic_file.h"
#include "train/io/safetensors.h"

namespace loom::train {
namespace fs = std::filesystem;
namespace {

constexpr const char* kPrefix = "checkpoint_";
constexpr const char* kFormat = "loom-checkpoint";
constexpr int kVersion = 1;
constexpr uint64_t kMaxMetadataBytes = 64 << 20;

// "checkpoint_<digits><suffix>" -> step; nullopt for any other name.
std::optional<int64_t> parse_step(const std::string& name, const std::string& suffix) {
  const std::string prefix = kPrefix;
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  const char* first = name.data() + prefix.size();
  const char* last = name.data() + name.size() - suffix.size();
  int64_t step = 0;
  auto [ptr, ec] = std::from_chars(first, last, step);
  if (ec != std::errc() || ptr != last || step < 0 || *first == '+' || *first == '-')
    return std::nullopt;
  return step;
}

// File names in `dir` ending in `suffix` that parse as checkpoint steps, ascending.
std::vector<int64_t> steps_with_suffix(const std::string& dir, const std::string& suffix) {
  std::vector<int64_t> steps;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return steps;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (auto s = parse_step(e.path().filename().string(), suffix)) steps.push_back(*s);
  }
  LOOM_CHECK(!ec, IOError, "CheckpointManager: cannot list ", dir, ": ", ec.message());
  std::sort(steps.begin(), steps.end());
  return steps;
}

uint32_t crc32_of(const std::vector<uint8_t>& bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large files in 1 GiB pieces.
  for (size_t at = 0; at < bytes.size();) {
    size_t n = std::min<size_t>(bytes.size() - at, size_t(1) << 30);
    crc = crc32(crc, bytes.data() + at, uInt(n));
    at += n;
  }
  return uint32_t(crc);
}

std::string leaf_str(const Tensor& t) {
  return detail::cat(shape_str(t.shape()), " ", dtype_name(t.dtype()));
}

void remove_file(const std::string& path) {
  std::error_code ec;
  fs::remove(path, ec);
  LOOM_CHECK(!ec, IOError, "CheckpointManager: cannot remove ", path, ": ", ec.message());
}

}  // namespace

CheckpointManager::CheckpointManager(std::string dir, int keep)
    : dir_(std::move(dir)), keep_(keep) {
  LOOM_CHECK(!dir_.empty(), ValueError, "CheckpointManager: empty directory name");
}

std::string CheckpointManager::data_path(int64_t step) const {
  return (fs::path(dir_) / (kPrefix + std::to_string(step) + ".safetensors")).string();
}

std::string CheckpointManager::metadata_path(int64_t step) const {
  return (fs::path(dir_) / (kPrefix + std::to_string(step) + ".json")).string();
}

std::vector<int64_t> CheckpointManager::steps() const { return steps_with_suffix(dir_, ".json"); }

std::optional<int64_t> CheckpointManager::latest_step() const {
  std::vector<int64_t> s = steps();
  if (s.empty()) return std::nullopt;
  return s.back();
}

void CheckpointManager::remove_checkpoint(int64_t step) const {
  // The commit marker goes first, so a crash in between leaves an ignored incomplete checkpoint.
  remove_file(metadata_path(step));
  remove_file(data_path(step));
}

void CheckpointManager::remove_leftovers() const {
  std::vector<int64_t> committed = steps();
  for (int64_t s : steps_with_suffix(dir_, ".safetensors"))
    if (!std::binary_search(committed.begin(), committed.end(), s)) remove_file(data_path(s));
  for (const char* suffix : {".safetensors.tmp", ".json.tmp"})
    for (int64_t s : steps_with_suffix(dir_, suffix))
      remove_file((fs::path(dir_) / (kPrefix + std::to_string(s) + suffix)).string());
}

void CheckpointManager::save(int64_t step, const Tree& state, const nlohmann::json& metadata,
                             bool overwrite) {
  LOOM_CHECK(step >= 0, ValueError, "CheckpointManager::save: step ", step, " is negative");
  LOOM_CHECK(state.is_dict(), ValueError,
             "CheckpointManager::save: the state must be a dict tree (params, opt_state, ...), "
             "got a single leaf of shape ",
             shape_str(state.tensor().shape()));
  LOOM_CHECK(metadata.is_object() || metadata.is_null(), ValueError,
             "CheckpointManager::save: metadata must be a JSON object, got ", metadata.type_name());
  std::error_code ec;
  fs::create_directories(dir_, ec);
  LOOM_CHECK(!ec, IOError, "CheckpointManager: cannot create ", dir_, ": ", ec.message());

  std::vector<int64_t> existing = steps();
  auto later = std::lower_bound(existing.begin(), existing.end(), step);
  if (later != existing.end()) {
    LOOM_CHECK(overwrite, train::InvalidCheckpointError,
               "CheckpointManager::save: refusing to save step ", step, ": a checkpoint at step ",
               *later, " already exists in ", dir_,
               " (pass overwrite=true to replace it and every later one)");
    for (auto it = existing.rbegin(); it != existing.rend() && *it >= step; ++it)
      remove_checkpoint(*it);
  }
  remove_leftovers();

  // Serialised in memory so the size and CRC recorded in the commit marker describe exactly the
  // bytes written.
  std::vector<uint8_t> bytes =
      safetensors_to_bytes(state.flatten(), {{"format", kFormat}, {"step", std::to_string(step)}});
  const std::string data_file = data_path(step);
  write_file_atomic(data_file, bytes);

  nlohmann::json marker = {
      {"format", kFormat},
      {"version", kVersion},
      {"step", step},
      {"data_file", fs::path(data_file).filename().string()},
      {"data_bytes", bytes.size()},
      {"data_crc32", crc32_of(bytes)},
      {"metadata", metadata.is_null() ? nlohmann::json::object() : metadata},
  };
  std::string text = marker.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  write_file_atomic(metadata_path(step), std::vector<uint8_t>(text.begin(), text.end()));

  if (keep_ > 0) {
    std::vector<int64_t> all = steps();
    for (size_t i = 0; i + size_t(keep_) < all.size(); ++i) remove_checkpoint(all[i]);
  }
}

std::pair<Tree, nlohmann::json> CheckpointManager::restore(std::optional<int64_t> step) const {
  std::vector<int64_t> all = steps();
  if (!step) {
    LOOM_CHECK(!all.empty(), train::InvalidCheckpointError,
               "CheckpointManager::restore: no complete "
               "checkpoint in ",
               dir_);
    step = all.back();
  }
  if (!std::binary_search(all.begin(), all.end(), *step)) {
    std::string have;
    for (int64_t s : all) have += (have.empty() ? "" : ", ") + std::to_string(s);
    LOOM_THROW(train::InvalidCheckpointError,
               "CheckpointManager::restore: no complete checkpoint at step ", *step, " in ", dir_,
               " (complete steps: [", have, "])");
  }

  const std::string json_file = metadata_path(*step);
  std::vector<uint8_t> text = read_file_bytes(json_file, kMaxMetadataBytes);
  nlohmann::json marker = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  auto corrupt = [&](const std::string& file, const std::string& what) {
    return CorruptCheckpointError(detail::cat("CheckpointManager::restore: ", file, ": ", what));
  };
  if (marker.is_discarded() || !marker.is_object()) throw corrupt(json_file, "not a JSON object");
  try {
    if (marker.at("format") != kFormat)
      throw corrupt(json_file, "format is not " + std::string(kFormat));
    if (marker.at("version").get<int>() != kVersion)
      throw corrupt(json_file, detail::cat("unsupported version ", marker.at("version").dump()));
    if (marker.at("step").get<int64_t>() != *step)
      throw corrupt(json_file,
                    detail::cat("records step ", marker.at("step").dump(), ", not ", *step));
    marker.at("data_bytes").get<uint64_t>();
    marker.at("data_crc32").get<uint32_t>();
    // The name is fixed by the step: a marker pointing elsewhere (another step's data, a path
    // outside the directory) is damage, not an alternative layout.
    const std::string expected_name = fs::path(data_path(*step)).filename().string();
    if (marker.at("data_file").get<std::string>() != expected_name)
      throw corrupt(json_file, detail::cat("data_file is ", marker.at("data_file").dump(),
                                           ", expected \"", expected_name, "\""));
  } catch (const nlohmann::json::exception& e) {
    throw corrupt(json_file, detail::cat("malformed commit marker (", e.what(), ")"));
  }

  const std::string data_file = data_path(*step);
  const uint64_t expected_bytes = marker["data_bytes"].get<uint64_t>();
  std::error_code ec;
  if (!fs::exists(data_file, ec)) throw corrupt(data_file, "missing (its commit marker exists)");
  const uint64_t size = file_size_checked(data_file);
  if (size != expected_bytes)
    throw corrupt(data_file, detail::cat(size < expected_bytes ? "truncated" : "too long",
                                         ": expected ", expected_bytes, " bytes, found ", size));
  std::vector<uint8_t> bytes = read_file_bytes(data_file, expected_bytes);
  if (crc32_of(bytes) != marker["data_crc32"].get<uint32_t>())
    throw corrupt(data_file, "CRC-32 mismatch: the data was changed or damaged after it was saved");

  Tree tree;
  try {
    SafetensorsFile f = safetensors_from_bytes(bytes, data_file);
    tree = tree_from_named_tensors(f.tensors, data_file);
  } catch (const CorruptCheckpointError&) {
    throw;
  } catch (const FormatError& e) {
    throw corrupt(data_file, e.what());
  }
  nlohmann::json metadata = marker.value("metadata", nlohmann::json::object());
  if (!metadata.is_object()) metadata = nlohmann::json::object();
  metadata["step"] = *step;
  return {std::move(tree), std::move(metadata)};
}

std::pair<Tree, nlohmann::json> CheckpointManager::restore_into(const Tree& target,
                                                                std::optional<int64_t> step) const {
  auto [loaded, metadata] = restore(step);
  const std::string origin = data_path(metadata["step"].get<int64_t>());
  return {match_tree_to_target(loaded, target, origin), std::move(metadata)};
}

Tree match_tree_to_target(const Tree& loaded, const Tree& target, const std::string& origin) {
  std::map<std::string, Tensor> have;
  for (auto& [path, t] : loaded.flatten()) have.emplace(path, t);
  std::vector<std::string> missing, unexpected, mismatched;
  std::vector<Tensor> leaves;
  std::string details;
  for (const auto& [path, want] : target.flatten()) {
    auto it = have.find(path);
    if (it == have.end()) {
      missing.push_back(path);
      details += detail::cat("\n  missing:    ", path, " (model: ", leaf_str(want), ")");
      continue;
    }
    const Tensor& got = it->second;
    if (got.shape() != want.shape() || got.dtype() != want.dtype()) {
      mismatched.push_back(path);
      details += detail::cat("\n  mismatched: ", path, " checkpoint ", leaf_str(got), ", model ",
                             leaf_str(want));
    } else {
      leaves.push_back(got.to(want.device()));
    }
    have.erase(it);
  }
  for (const auto& [path, t] : have) {
    unexpected.push_back(path);
    details += detail::cat("\n  unexpected: ", path, " (checkpoint: ", leaf_str(t), ")");
  }
  if (!missing.empty() || !unexpected.empty() || !mismatched.empty()) {
    std::string msg = detail::cat(
        "restore_into: ", origin, " does not match the target tree: ", missing.size(), " missing, ",
        unexpected.size(), " unexpected, ", mismatched.size(), " mismatched key(s)", details);
    throw CheckpointMismatchError(msg, std::move(missing), std::move(unexpected),
                                  std::move(mismatched));
  }
  return target.unflatten(leaves);
}

}  // namespace loom::train
