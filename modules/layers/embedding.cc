#include "modules/layers/embedding.h"

#include "core/ops/linalg.h"
#include "core/ops/shape.h"
#include "modules/layers/common.h"

namespace loom::nn {

Tensor Embed::embedding() const {
  LOOM_CHECK(num_embeddings > 0 && features > 0, ValueError, "Embed at ", path_text(),
             ": num_embeddings (", num_embeddings, ") and features (", features,
             ") must be positive");
  return param("embedding", embedding_init, {num_embeddings, features}, param_dtype);
}

Tensor Embed::call(const Tensor& ids) const {
  LOOM_CHECK(is_integral(ids.dtype()) && ids.dtype() != DType::Bool, DTypeError, "Embed at ",
             path_text(), ": input type must be an integer, got ", dtype_name(ids.dtype()),
             " of shape ", shape_str(ids.shape()));
  Tensor table = detail::promote_dtype({embedding()}, dtype)[0];
  return take(table, ids, 0);
}

Tensor Embed::attend(const Tensor& query) const {
  auto p = detail::promote_dtype({query, embedding()}, dtype);
  return matmul(p[0], transpose(p[1]));
}

}  // namespace loom::nn
