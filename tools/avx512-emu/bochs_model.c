#define _GNU_SOURCE
#include <dlfcn.h>
#include <string.h>
#include <stdlib.h>
#include <stdio.h>
static const char *names[64];
void *sim_get_param_enum(const char *p) {
  static void *(*orig)(const char *) = 0;
  static void *(*mk)(const char *, const char **, unsigned) = 0;
  static void *model = 0;
  if (!orig) {
    void *h = dlopen(getenv("BOCHS_SO"), RTLD_NOW | RTLD_NOLOAD);
    orig = dlsym(h, "sim_get_param_enum");
    mk = dlsym(h, "sim_new_param_enum");
  }
  if (strcmp(p, "cpu.model") == 0 && getenv("BOCHS_MODEL_IDX")) {
    if (!model) {
      for (int i = 0; i < 63; i++) names[i] = "m";
      names[63] = 0;
      model = mk("model", names, atoi(getenv("BOCHS_MODEL_IDX")));
    }
    return model;
  }
  return orig(p);
}
