// Preloaded into the emulator process (see README.md): the bochscpu wheel was linked against
// glibc 2.38's C23 variants of these two functions; older glibc (Debian 12 has 2.36) lacks
// them, and their behaviour for the inputs Bochs gives them is the classic functions'.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

unsigned long long __isoc23_strtoull(const char *s, char **end, int base) {
  return strtoull(s, end, base);
}

int __isoc23_sscanf(const char *s, const char *format, ...) {
  va_list args;
  va_start(args, format);
  int n = vsscanf(s, format, args);
  va_end(args);
  return n;
}
