// Checkpoint manager: numbered, crash-safe checkpoints of a whole training state.
//
// Each checkpoint is a pair of files in `dir`:
//   checkpoint_<step>.safetensors  every leaf of the state tree under its '/'-joined path
//                                  ("params/Dense_0/kernel", "opt_state/0/mu/...", ...)
//   checkpoint_<step>.json         {"format": "loom-checkpoint", "version": 1, "step": ...,
//                                   "data_file": ..., "data_bytes": ..., "data_crc32": ...,
//                                   "metadata": {config, rng key, data position, ...}}
// Both are written atomically (temporary file, fsync, rename, fsync of the directory), the data
// first: the JSON is the commit marker, so a checkpoint whose JSON is missing is an incomplete
// save and is ignored (and its leftovers are removed by the next save). A process killed at any
// moment of a save therefore leaves the previous checkpoint loadable. The JSON records the data
// file's size and CRC-32, so truncation or corruption after the commit is detected on restore.
//
// As in Flax's save_checkpoint, a step not after the latest one is refused unless `overwrite`
// (which then removes the checkpoints at that step and after), and only the newest `keep`
// checkpoints are kept, ordered by step number (natural sort). One process writes a directory
// at a time.
//
// Example:
//   CheckpointManager ckpt("runs/x/checkpoints", /*keep=*/3);
//   ckpt.save(step, state, {{"config", cfg}, {"rng", key_words}, {"epoch", epoch}});
//   if (ckpt.latest_step()) {
//     auto [restored, meta] = ckpt.restore_into(state);   // checks keys, shapes and dtypes
//     int64_t step = meta["step"];
//   }
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/tree.h"

namespace loom::train {

/// A save or restore that cannot be done as asked: a step not after the latest checkpoint
/// without overwrite, no checkpoint at all, or no checkpoint at the requested step.
class InvalidCheckpointError : public Error {
  using Error::Error;
};
/// A committed checkpoint whose files are missing, truncated, corrupt or inconsistent; the
/// message names the file and what was expected.
class CorruptCheckpointError : public FormatError {
  using FormatError::FormatError;
};
/// A checkpoint whose tree does not match the target of restore_into. The message lists every
/// missing, unexpected and mismatched key with its shape and dtype on both sides.
class CheckpointMismatchError : public ShapeError {
 public:
  CheckpointMismatchError(const std::string& message, std::vector<std::string> missing,
                          std::vector<std::string> unexpected, std::vector<std::string> mismatched)
      : ShapeError(message),
        missing_(std::move(missing)),
        unexpected_(std::move(unexpected)),
        mismatched_(std::move(mismatched)) {}
  const std::vector<std::string>& missing() const { return missing_; }        // in target only
  const std::vector<std::string>& unexpected() const { return unexpected_; }  // in checkpoint only
  const std::vector<std::string>& mismatched() const { return mismatched_; }  // shape or dtype

 private:
  std::vector<std::string> missing_, unexpected_, mismatched_;
};

class CheckpointManager {
 public:
  /// `keep` <= 0 keeps every checkpoint. The directory is created by the first save.
  explicit CheckpointManager(std::string dir, int keep = 3);

  /// Saves `state` (a dict tree: params, batch_stats, opt_state, ...) and `metadata` (a JSON
  /// object or null) as step `step` (>= 0). InvalidCheckpointError when a checkpoint at this or
  /// a later step exists and `overwrite` is false; ValueError for a negative step, a leaf
  /// (non-dict) state or non-object metadata; IOError when the files cannot be written.
  void save(int64_t step, const Tree& state, const nlohmann::json& metadata = nullptr,
            bool overwrite = false);

  /// Steps of the complete checkpoints, ascending.
  std::vector<int64_t> steps() const;
  std::optional<int64_t> latest_step() const;

  /// The state tree (CPU tensors, in the saved order) and the saved metadata with "step" set to
  /// the checkpoint's step. Restores the latest checkpoint unless `step` is given.
  /// InvalidCheckpointError when there is none (at that step); CorruptCheckpointError when its
  /// files are damaged.
  std::pair<Tree, nlohmann::json> restore(std::optional<int64_t> step = {}) const;
  /// As restore, but the result has the structure, order and leaf devices of `target` (empty
  /// subtrees included). CheckpointMismatchError listing every missing, unexpected and shape- or
  /// dtype-mismatched key at once.
  std::pair<Tree, nlohmann::json> restore_into(const Tree& target,
                                               std::optional<int64_t> step = {}) const;

  std::string data_path(int64_t step) const;
  std::string metadata_path(int64_t step) const;
  const std::string& dir() const { return dir_; }
  int keep() const { return keep_; }

 private:
  void remove_checkpoint(int64_t step) const;
  void remove_leftovers() const;
  std::string dir_;
  int keep_;
};

/// Rebuilds `target`'s structure from `loaded` (matched by '/'-joined path), moving leaves to
/// the target leaves' devices; CheckpointMismatchError (naming `origin`) as restore_into.
Tree match_tree_to_target(const Tree& loaded, const Tree& target, const std::string& origin);

}  // namespace loom::train
