// The `loom` command. For now: a short demonstration of the tensor core and JAX-exact random
// keys on the CPU, and on the GPU when there is one. (Training subcommands come with the
// training issue.)
#include <iostream>

#include "core/loom.h"

int main() {
  using namespace loom;
  try {
    std::vector<Device> devices{Device::cpu()};
    if (cuda_available()) devices.push_back(Device::cuda(0));
    for (const Device& d : devices) {
      std::cout << "== " << d.str() << " ==\n";
      Tensor x = arange(6, DType::F32, d).reshape({2, 3});
      std::cout << "x = " << x << "\n";
      std::cout << "gelu(x) * 2 - 1 = " << (gelu(x) * 2.0 - 1.0) << "\n";
      std::cout << "sum(x, axis 1) = " << sum(x, {1}) << "\n";
      std::cout << "x as bfloat16 = " << x.to(DType::BF16) << "\n";
    }
    return 0;
  } catch (const Error& e) {
    std::cerr << "loom: error: " << e.what() << "\n";
    return 1;
  }
}
