{
  "targets": [
    {
      "target_name": "lunar_native",
      "sources": ["native/addon.cc", "native/crc32c.cc", "native/pool.cc", "native/file.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=9", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        [
          "OS=='linux' and '<!(test -f /usr/include/liburing.h && echo yes || echo no)'=='yes' and '<!(echo $LUNAR_NO_LIBURING)'==''",
          {
            "defines": ["LUNAR_HAVE_LIBURING"],
            "libraries": ["-Wl,-Bstatic", "-luring", "-Wl,-Bdynamic", "-Wl,--exclude-libs,ALL"]
          }
        ]
      ]
    }
  ]
}
