#include "train/data/dataset.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/random.h"
#include "train/io/cifar.h"
#include "train/io/idx.h"
#include "train/io/text_corpus.h"

namespace loom::train {
namespace {

std::string after_colon(const std::string& name) {
  size_t p = name.find(':');
  return p == std::string::npos ? "" : name.substr(p + 1);
}

Dataset from_idx(const std::string& name, Split split) {
  std::string dir;
  if (const char* env = std::getenv("LOOM_DATA_DIR")) dir = std::string(env) + "/" + name;
  else dir = "/usr/share/datasets/" + std::string(name == "fashion_mnist" ? "fashion-mnist" : "mnist");
  IdxDataset d = load_mnist_split(dir, split == Split::Train ? "train" : "t10k");
  Dataset out;
  out.name = name;
  out.inputs = d.images.reshape({d.images.dim(0), d.images.dim(1), d.images.dim(2), 1});
  out.labels = d.labels.to(DType::I32);
  out.num_classes = 10;
  return out;
}

Dataset from_cifar(const std::string& name, Split split) {
  bool is100 = name.rfind("cifar100", 0) == 0;
  std::string dir = after_colon(name);
  LOOM_CHECK(!dir.empty(), ValueError, "dataset '", name, "': give the directory, e.g. ",
             is100 ? "cifar100:/data/cifar-100-binary" : "cifar10:/data/cifar-10-batches-bin");
  std::vector<std::string> files;
  if (is100) {
    files = {dir + (split == Split::Train ? "/train.bin" : "/test.bin")};
  } else if (split == Split::Train) {
    for (int i = 1; i <= 5; ++i) files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
  } else {
    files = {dir + "/test_batch.bin"};
  }
  CifarData d = load_cifar(files, is100 ? CifarKind::Cifar100 : CifarKind::Cifar10);
  return Dataset{name, d.images, d.labels.to(DType::I32), is100 ? 100 : 10};
}

Dataset from_text(const std::string& name, Split split) {
  std::string path = after_colon(name);
  LOOM_CHECK(!path.empty(), ValueError, "dataset '", name, "': give a file, e.g. text:/path/to/corpus.txt");
  TextCorpus c = load_text_corpus(path, 0.1, DType::I32);
  Dataset out;
  out.name = name;
  out.inputs = split == Split::Train ? c.train : c.validation;
  return out;
}

// "synthetic:HxWxC:CLASSES:N": random images whose brightness encodes a random label (for
// benchmarks and tests).
Dataset synthetic(const std::string& name, Split split) {
  std::vector<std::string> parts;
  std::stringstream ss(name);
  for (std::string p; std::getline(ss, p, ':');) parts.push_back(p);
  int64_t h = 28, w = 28, c = 1, classes = 10, n = 1024;
  try {
    if (parts.size() > 1 && std::sscanf(parts[1].c_str(), "%ldx%ldx%ld", &h, &w, &c) != 3)
      throw std::invalid_argument(parts[1]);
    if (parts.size() > 2) classes = std::stol(parts[2]);
    if (parts.size() > 3) n = std::stol(parts[3]);
  } catch (const std::exception&) {
    LOOM_THROW(ValueError, "dataset '", name, "': expected synthetic:HxWxC:CLASSES:N, e.g. synthetic:32x32x3:10:1024");
  }
  LOOM_CHECK(h > 0 && w > 0 && c > 0 && classes > 0 && n > 0, ValueError, "dataset '", name,
             "': sizes must be positive");
  random::Key k = random::fold_in(random::key(1234), split == Split::Train ? 0 : 1);
  auto keys = random::split(k, 2);
  std::vector<uint32_t> lb = random::bits(keys[1], {n}).to_vector<uint32_t>();
  std::vector<int32_t> labels(lb.size());
  for (size_t i = 0; i < lb.size(); ++i) labels[i] = int32_t(lb[i] % uint32_t(classes));
  // Noise plus a brightness that depends on the class, so a model can learn the task.
  std::vector<uint32_t> b = random::bits(keys[0], {n, h, w, c}).to_vector<uint32_t>();
  std::vector<uint8_t> px(b.size());
  const size_t per_image = size_t(h * w * c);
  for (size_t i = 0; i < b.size(); ++i)
    px[i] = uint8_t((b[i] >> 25) + uint32_t(labels[i / per_image]) * 128u / uint32_t(classes));
  return Dataset{name, from_vector(px, {n, h, w, c}), from_vector(labels, {n}), classes};
}

}  // namespace

Dataset load_dataset(const std::string& name, Split split) {
  if (name == "fashion_mnist" || name == "mnist") return from_idx(name, split);
  if (name.rfind("cifar10:", 0) == 0 || name.rfind("cifar100:", 0) == 0) return from_cifar(name, split);
  if (name.rfind("text:", 0) == 0) return from_text(name, split);
  if (name.rfind("synthetic", 0) == 0) return synthetic(name, split);
  LOOM_THROW(ValueError, "unknown dataset '", name,
             "' (known: fashion_mnist, mnist, cifar10:DIR, cifar100:DIR, text:FILE, "
             "synthetic:HxWxC:CLASSES:N)");
}

}  // namespace loom::train
