#include "addon.h"

namespace imgmount {

void InitLoop(Napi::Env, Napi::Object) {}

}  // namespace imgmount
