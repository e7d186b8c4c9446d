// Preloaded into the emulator process (see README.md): answers Bochs' `cpu.model` parameter
// query with the CPU model whose cpudb index is $BOCHS_MODEL_IDX, and forwards every other
// query to bochscpu (the library $BOCHS_SO, already loaded by Python).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *names[64];

void *sim_get_param_enum(const char *p) {
  static void *(*orig)(const char *) = 0;
  static void *(*make)(const char *, const char **, unsigned) = 0;
  static void *model = 0;
  if (!orig) {
    const char *so = getenv("BOCHS_SO");
    void *h = so ? dlopen(so, RTLD_NOW | RTLD_NOLOAD) : 0;
    orig = h ? dlsym(h, "sim_get_param_enum") : 0;
    make = h ? dlsym(h, "sim_new_param_enum") : 0;
    if (!orig || !make || (void *)orig == (void *)sim_get_param_enum) {
      fprintf(stderr, "bochs_model: cannot find bochscpu's parameters in %s\n",
              so ? so : "(BOCHS_SO unset)");
      abort();
    }
  }
  const char *idx = getenv("BOCHS_MODEL_IDX");
  if (idx && strcmp(p, "cpu.model") == 0) {
    if (!model) {
      // Bochs reads the index; the names are never shown.
      for (int i = 0; i < 63; i++) names[i] = "model";
      names[63] = 0;
      model = make("model", names, (unsigned)atoi(idx));
    }
    return model;
  }
  return orig(p);
}
