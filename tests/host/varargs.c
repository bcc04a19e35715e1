/* The C-variadic functions of the in-repo OFX test host (paramGetValue & co, the message suite).
 * Rust cannot define a `...` function on stable, so these are real C variadic functions that read
 * exactly the arguments the OFX API prescribes (the parameter's type says how many and of which
 * kind; a message's format says the rest, through vsnprintf) and hand them to the Rust host
 * through the callbacks it registers with vdiff_host_shim_init. Built by build.rs, linked into
 * the test binaries only. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef int OfxStatus;
#define kOfxStatErrBadHandle 9
#define MAX_VALUES 4

/* Numbers of int, double and string values of a parameter; nonzero return: not a parameter. */
typedef int (*LayoutFn)(void *param, int *ints, int *doubles, int *strings);
/* Value read: `outs` holds the plugin's n out-pointers. */
typedef OfxStatus (*GetFn)(void *param, int has_time, double time, void **outs, int n);
typedef OfxStatus (*DerivFn)(void *param, double time, void **outs, int n);
typedef OfxStatus (*IntegralFn)(void *param, double t1, double t2, void **outs, int n);
/* Value write: ints (n_ints), doubles (n_doubles) or one string (NULL if none). */
typedef OfxStatus (*SetFn)(void *param, int has_time, double time, const long long *ints, int n_ints,
                           const double *doubles, int n_doubles, const char *string, int has_string);
/* A message, already formatted. */
typedef OfxStatus (*MessageFn)(int persistent, void *handle, const char *type, const char *id,
                               const char *format, const char *text);

struct VdiffHostCallbacks {
    LayoutFn layout;
    GetFn get;
    DerivFn derivative;
    IntegralFn integral;
    SetFn set;
    MessageFn message;
};

static struct VdiffHostCallbacks cb;

void vdiff_host_shim_init(const struct VdiffHostCallbacks *callbacks) { cb = *callbacks; }

/* How many out-pointers a value read of this parameter takes (0 for an unknown handle). */
static int value_count(void *param) {
    int ints = 0, doubles = 0, strings = 0;
    if (!cb.layout || cb.layout(param, &ints, &doubles, &strings) != 0) return 0;
    int n = ints + doubles + strings;
    return n > MAX_VALUES ? MAX_VALUES : n;
}

/* Reads the plugin's out-pointers of a value read of this parameter into `outs`; returns how many. */
static int read_outs(void *param, void **outs, va_list ap) {
    int n = value_count(param);
    for (int i = 0; i < n; i++) outs[i] = va_arg(ap, void *);
    return n;
}

static OfxStatus read_values(void *param, int has_time, double time, va_list ap) {
    void *outs[MAX_VALUES] = {0};
    int n = read_outs(param, outs, ap);
    return cb.get ? cb.get(param, has_time, time, outs, n) : kOfxStatErrBadHandle;
}

OfxStatus vdiff_host_param_get_value(void *param, ...) {
    va_list ap;
    va_start(ap, param);
    OfxStatus st = read_values(param, 0, 0.0, ap);
    va_end(ap);
    return st;
}

OfxStatus vdiff_host_param_get_value_at_time(void *param, double time, ...) {
    va_list ap;
    va_start(ap, time);
    OfxStatus st = read_values(param, 1, time, ap);
    va_end(ap);
    return st;
}

OfxStatus vdiff_host_param_get_derivative(void *param, double time, ...) {
    void *outs[MAX_VALUES] = {0};
    va_list ap;
    va_start(ap, time);
    int n = read_outs(param, outs, ap);
    va_end(ap);
    return cb.derivative ? cb.derivative(param, time, outs, n) : kOfxStatErrBadHandle;
}

OfxStatus vdiff_host_param_get_integral(void *param, double t1, double t2, ...) {
    void *outs[MAX_VALUES] = {0};
    va_list ap;
    va_start(ap, t2);
    int n = read_outs(param, outs, ap);
    va_end(ap);
    return cb.integral ? cb.integral(param, t1, t2, outs, n) : kOfxStatErrBadHandle;
}

static OfxStatus write_values(void *param, int has_time, double time, va_list ap) {
    int ints = 0, doubles = 0, strings = 0;
    long long iv[MAX_VALUES] = {0};
    double dv[MAX_VALUES] = {0};
    const char *s = NULL;
    if (!cb.set) return kOfxStatErrBadHandle;
    if (!cb.layout || cb.layout(param, &ints, &doubles, &strings) != 0)
        return cb.set(param, has_time, time, iv, 0, dv, 0, NULL, 0);
    if (ints > MAX_VALUES) ints = MAX_VALUES;
    if (doubles > MAX_VALUES) doubles = MAX_VALUES;
    /* OFX passes integers as int, doubles as double, strings as char*. */
    for (int i = 0; i < ints; i++) iv[i] = va_arg(ap, int);
    for (int i = 0; i < doubles; i++) dv[i] = va_arg(ap, double);
    if (strings > 0) s = va_arg(ap, const char *);
    return cb.set(param, has_time, time, iv, ints, dv, doubles, s, strings > 0);
}

OfxStatus vdiff_host_param_set_value(void *param, ...) {
    va_list ap;
    va_start(ap, param);
    OfxStatus st = write_values(param, 0, 0.0, ap);
    va_end(ap);
    return st;
}

OfxStatus vdiff_host_param_set_value_at_time(void *param, double time, ...) {
    va_list ap;
    va_start(ap, time);
    OfxStatus st = write_values(param, 1, time, ap);
    va_end(ap);
    return st;
}

static OfxStatus message(int persistent, void *handle, const char *type, const char *id,
                         const char *format, va_list ap) {
    char small[1024];
    char *text = small;
    if (!cb.message) return kOfxStatErrBadHandle;
    if (format) {
        va_list again;
        va_copy(again, ap);
        int len = vsnprintf(small, sizeof small, format, ap);
        if (len >= (int)sizeof small) {
            text = malloc((size_t)len + 1);
            if (text) vsnprintf(text, (size_t)len + 1, format, again);
            else text = small;
        }
        va_end(again);
        if (len < 0) small[0] = '\0';
    } else {
        small[0] = '\0';
    }
    OfxStatus st = cb.message(persistent, handle, type, id, format, text);
    if (text != small) free(text);
    return st;
}

OfxStatus vdiff_host_message(void *handle, const char *type, const char *id, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    OfxStatus st = message(0, handle, type, id, format, ap);
    va_end(ap);
    return st;
}

OfxStatus vdiff_host_set_persistent_message(void *handle, const char *type, const char *id,
                                            const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    OfxStatus st = message(1, handle, type, id, format, ap);
    va_end(ap);
    return st;
}
