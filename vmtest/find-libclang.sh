#!/usr/bin/env bash
# Prints every libclang shared library that bindgen would load, one per line,
# and exits 1 when there is none. Used by vmtest/run.sh to decide whether
# libclang-dev must be installed (issue #23).
#
# bindgen finds libclang through clang-sys (runtime loading; clang-sys
# 1.9.1 as locked, build/common.rs and build/dynamic.rs); this searches
# where clang-sys does, in its order:
#   - only $LIBCLANG_PATH (a directory or a file), when it is set;
#   - otherwise `${LLVM_CONFIG_PATH:-llvm-config} --prefix` /bin, /lib and
#     /lib64, the directories of $LD_LIBRARY_PATH and $LIBRARY_PATH, and
#     /usr/local/llvm*/lib*, /usr/local/lib*/*/*, /usr/local/lib*/*,
#     /usr/local/lib*, /usr/lib*/*/*, /usr/lib*/*, /usr/lib*;
# for files named libclang.so, libclang-*.so, libclang.so.* or
# libclang-*.so.*, skipping libclang-cpp (a different library, which
# llvm-*-dev pulls in: matching it is how issue #23 went wrong) and anything
# that is not a 64-bit ELF file.
set -uo pipefail
shopt -s nullglob

NAMES=(libclang.so 'libclang-*.so' 'libclang.so.*' 'libclang-*.so.*')

# True when $1 opens as a 64-bit ELF file (clang-sys checks the ELF class).
is_elf64() {
  local head
  head=$(od -An -tx1 -N5 "$1" 2>/dev/null | tr -d ' \n') || return 1
  [[ $head == 7f454c4602 ]]
}

# Prints the libclang candidates directly in directory $1 (taken literally).
search() {
  local dir=$1 name f
  [[ -d $dir ]] || return 0
  for name in "${NAMES[@]}"; do
    for f in "$dir"/$name; do
      [[ ${f##*/} == *-cpp.* ]] && continue
      is_elf64 "$f" && printf '%s\n' "$f"
    done
  done
}

# Runs search on every directory matching glob $1.
search_glob() {
  local dir
  for dir in $1; do search "$dir"; done
}

found=$(
  if [[ -n ${LIBCLANG_PATH:-} ]]; then
    if [[ -f $LIBCLANG_PATH ]]; then
      # A file: accepted when it is one of the names clang-sys looks for.
      search "$(dirname "$LIBCLANG_PATH")" | grep -Fx -- "$LIBCLANG_PATH"
    else
      search "$LIBCLANG_PATH"
    fi
  else
    if prefix=$("${LLVM_CONFIG_PATH:-llvm-config}" --prefix 2>/dev/null | head -n1) && [[ -n $prefix ]]; then
      for sub in bin lib lib64; do search "$prefix/$sub"; done
    fi
    IFS=: read -ra dirs <<<"${LD_LIBRARY_PATH:-}:${LIBRARY_PATH:-}"
    for dir in "${dirs[@]}"; do [[ -n $dir ]] && search "$dir"; done
    for pattern in '/usr/local/llvm*/lib*' '/usr/local/lib*/*/*' '/usr/local/lib*/*' \
      '/usr/local/lib*' '/usr/lib*/*/*' '/usr/lib*/*' '/usr/lib*'; do
      search_glob "$pattern"
    done
  fi
)
[[ -n $found ]] || exit 1
printf '%s\n' "$found" | awk '!seen[$0]++'
