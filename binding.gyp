{
  "targets": [
    {
      "target_name": "imgmount",
      "sources": [
        "native/addon.cc",
        "native/attach-mount.cc",
        "native/credentials.cc",
        "native/faults.c",
        "native/files.cc",
        "native/image.cc",
        "native/lock.cc",
        "native/loop.cc",
        "native/mount.cc",
        "native/mountinfo-watch.cc",
        "native/namespace.cc",
        "native/path.cc",
        "native/spawn.cc",
        "native/users.cc",
        "native/work-pool.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "_GNU_SOURCE",
        "_FILE_OFFSET_BITS=64"
      ],
      "cflags": [
        "-fvisibility=hidden"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-fvisibility=hidden",
        "-Wall",
        "-Wextra",
        "-Wno-missing-field-initializers"
      ],
      "ldflags": [
        "-Wl,-z,nodelete"
      ]
    },
    {
      "target_name": "imgmount-nsenter",
      "type": "executable",
      "sources": [
        "native/faults.c",
        "native/helper/nsenter.c"
      ],
      "defines": [
        "_GNU_SOURCE",
        "_FILE_OFFSET_BITS=64"
      ],
      "cflags": [
        "-O2",
        "-Wall",
        "-Wextra",
        "-Wno-missing-field-initializers"
      ]
    }
  ]
}
