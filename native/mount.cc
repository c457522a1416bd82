#include "addon.h"

namespace imgmount {

void InitMount(Napi::Env, Napi::Object) {}

}  // namespace imgmount
