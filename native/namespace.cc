#include "addon.h"

namespace imgmount {

void InitNamespace(Napi::Env, Napi::Object) {}

}  // namespace imgmount
