/*
 * napi_args.h: argument and result helpers shared by overlayd's two addons.
 * Define ADDON_NAME (for error messages) before including.
 */
#ifndef OVERLAYD_NAPI_ARGS_H
#define OVERLAYD_NAPI_ARGS_H
#include <node_api.h>
#include <errno.h>
#include <stdint.h>

#define MAXARGS 8

typedef struct { napi_env env; size_t argc; napi_value argv[MAXARGS]; } args_t;

static inline int get_args(napi_env env, napi_callback_info info, args_t *a, size_t want) {
  a->env = env;
  a->argc = MAXARGS;
  if (napi_get_cb_info(env, info, &a->argc, a->argv, NULL, NULL) != napi_ok) return -1;
  if (a->argc < want) { napi_throw_type_error(env, NULL, ADDON_NAME ": too few arguments"); return -1; }
  return 0;
}

#define ARGS(n) args_t a; if (get_args(env, info, &a, n)) return NULL

/*
 * Integer arguments. A wrongly-typed one throws and the caller returns at once: carrying on
 * with 0 would act on fd 0 (close, write) or on mode 0 with the exception only noticed later.
 * Use through I32/I64, which declare the variable and return NULL on failure.
 */
static inline int arg_i32(args_t *a, size_t i, int32_t *v) {
  if (napi_get_value_int32(a->env, a->argv[i], v) == napi_ok) return 0;
  napi_throw_type_error(a->env, NULL, ADDON_NAME ": expected integer");
  return -1;
}

static inline int arg_i64(args_t *a, size_t i, int64_t *v) {
  if (napi_get_value_int64(a->env, a->argv[i], v) == napi_ok) return 0;
  napi_throw_type_error(a->env, NULL, ADDON_NAME ": expected integer");
  return -1;
}

#define I32(i, var) int32_t var; if (arg_i32(&a, i, &var)) return NULL
#define I64(i, var) int64_t var; if (arg_i64(&a, i, &var)) return NULL

static inline napi_value num(napi_env env, double v) {
  napi_value r;
  napi_create_double(env, v, &r);
  return r;
}

/* A syscall's result as JS sees it: the value, or -errno. */
static inline napi_value rc(napi_env env, long r) { return num(env, r < 0 ? -errno : (double)r); }

/* One exported function of an addon. */
typedef struct { const char *name; napi_callback fn; } export_fn;

static inline void export_fns(napi_env env, napi_value exports, const export_fn *fns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
}

static inline void def_int(napi_env env, napi_value obj, const char *name, int64_t v) {
  napi_value n;
  napi_create_int64(env, v, &n);
  napi_set_named_property(env, obj, name, n);
}

#endif
