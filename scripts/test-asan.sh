#!/usr/bin/env bash
# Builds the addon and imgmount-nsenter with AddressSanitizer and UndefinedBehaviorSanitizer
# into build-asan/ (the normal build/ is not touched) and runs the test suite with them: every
# native call of the unit and kernel tests (and of the Node child processes they start) goes
# through the instrumented code. Node itself is not instrumented and the ASan runtime must be
# the first library it loads: build-asan/bin/node is a copy of node with libasan and libubsan
# added as its first DT_NEEDED entries (patchelf), first on PATH. (LD_PRELOAD would do that
# too, but every other program the tests run would inherit it, and some, ps for one, deadlock
# under a preloaded ASan.) Any report fails the run (ASan aborts; UBSan is built with
# -fno-sanitize-recover). Leak detection is off in Node (V8 keeps its heap to the end on
# purpose) and on in the helper, which is short-lived C whose every exit path must free what it
# took. The helper is found next to the addon named by IMGMOUNT_NATIVE_PATH.
#
#   scripts/test-asan.sh                 the whole suite
#   scripts/test-asan.sh 'dist/test/kernel/loop/loop*.test.js'   a subset (a mocha spec glob)
#
# The last line of output is mocha's "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-host.sh --sanitizers
scripts/build.sh
node dist/scripts/make-fixtures.js >/dev/null

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
for lib in "$libasan" "$libubsan"; do
  [ -e "$lib" ] || { echo "test-asan: $(basename "$lib") not found (gcc -print-file-name); install gcc's sanitizer runtimes" >&2; exit 1; }
done

# A project directory of its own for node-gyp: the same binding.gyp and sources.
out=build-asan
mkdir -p "$out"
cp binding.gyp "$out/binding.gyp"
ln -sfn ../native "$out/native"
ln -sfn ../node_modules "$out/node_modules"
sanitize="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
(
  cd "$out"
  export CFLAGS="$sanitize -DIMGMOUNT_SANITIZE" CXXFLAGS="$sanitize -DIMGMOUNT_SANITIZE" LDFLAGS="-fsanitize=address,undefined"
  # Flags are fixed here, so a configured build directory only needs what changed rebuilt.
  if [ -f build/Makefile ] && [ build/Makefile -nt binding.gyp ]; then step=build; else step=rebuild; fi
  npx --no-install node-gyp "$step" --loglevel=error >/dev/null
)
release="$PWD/$out/build/Release"
# As root the library loads an overridden addon or helper only if nobody else can change it.
chmod -R go-w "$out/build"
for f in imgmount.node imgmount-nsenter; do
  nm -D "$release/$f" 2>/dev/null | grep __asan_init >/dev/null || { echo "test-asan: $release/$f is not instrumented" >&2; exit 1; }
done

# Node with the sanitizer runtimes loaded first (remade when node or the runtimes change), and
# LeakSanitizer turned off in it by a library that defines __lsan_is_turned_off (libasan leaves
# that hook to the program): tests start Node children with environments of their own, without
# ASAN_OPTIONS, and V8 keeps its heap until exit on purpose.
soname() { readelf -d "$(readlink -f "$1")" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'; }
node_bin=$(readlink -f "$(command -v node)")
mkdir -p "$out/bin"
lsan_off="$PWD/$out/bin/libimgmount-lsan-off.so"
if [ ! -x "$out/bin/node" ] || [ "$node_bin" -nt "$out/bin/node" ] || [ "$libasan" -nt "$out/bin/node" ] || [ "$0" -nt "$out/bin/node" ]; then
  echo 'int __lsan_is_turned_off(void) { return 1; }' | gcc -shared -fPIC -O2 -x c - -o "$lsan_off"
  cp "$node_bin" "$out/bin/node.tmp"
  # Each call puts what it adds in front: libasan must end up first.
  patchelf --add-needed "$lsan_off" "$out/bin/node.tmp"
  patchelf --add-needed "$(soname "$libubsan")" --add-needed "$(soname "$libasan")" "$out/bin/node.tmp"
  mv "$out/bin/node.tmp" "$out/bin/node"
fi
needed=$(readelf -d "$out/bin/node" | grep NEEDED)
case "${needed%%$'\n'*}" in
  *libasan*) ;;
  *) echo "test-asan: $out/bin/node does not load libasan first" >&2; exit 1 ;;
esac
export PATH="$PWD/$out/bin:$PATH"

# The helper is the one next to the addon (IMGMOUNT_HELPER_PATH stays unset: tests of that
# variable expect to set it themselves).
export IMGMOUNT_NATIVE_PATH="$release/imgmount.node"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
echo "test-asan: addon and helper from $release, node $(command -v node) with ASan and UBSan loaded first" >&2

# Left out, because what they check does not hold with an overridden, instrumented addon:
#  - package.test: which addon a packed install loads (IMGMOUNT_NATIVE_PATH overrides its
#    prebuild), not this build's native code;
#  - fuzz-harness.test: the fuzzer's RSS bound (ASan's redzones and quarantine grow RSS).
ignore=(dist/test/kernel/package/install.test.js dist/test/unit/harness/fuzz-harness.test.js)
echo "test-asan: left out (they check the package's own addon and RSS bounds): ${ignore[*]}" >&2
args=()
for f in "${ignore[@]}"; do args+=(--ignore "$f"); done

[ $# -gt 0 ] && export IMGMOUNT_TEST_SPEC="$1"
if [ "$(id -u)" -eq 0 ] && unshare --mount --propagation private true 2>/dev/null; then
  exec unshare --mount --propagation private -- npx --no-install mocha "${args[@]}"
fi
echo "test-asan: not root or no mount namespaces: running without a private mount namespace (kernel tests will skip)" >&2
exec npx --no-install mocha "${args[@]}"
