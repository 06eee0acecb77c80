/*
 * A fake libnvidia-ml.so.1 for nvshim's tests: the NVML functions nvshim
 * (through NVIDIA's pynvml binding) calls, answering from a small inventory.
 *
 * The inventory is the file "fakenvml-inventory.txt" next to this library
 * (found with dladdr), written by the tests from a JSON inventory:
 *
 *   driver <version>
 *   cuda <version as NVML gives it, e.g. 12040>       (optional; default 12040)
 *   gpu <index> <minor> <uuid> <pci bus id> <mig 0|1> <max mig count> <name...>
 *   mig <gpu index> <slot> <gpu instance> <compute instance> <uuid>
 *
 * Build: gcc -shared -fPIC -Wl,-soname,libnvidia-ml.so.1 -o libnvidia-ml.so.<ver> fakenvml.c
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_UNKNOWN 999

#define MAX_GPUS 16
#define MAX_MIGS 8

struct device {
    int is_mig;
    unsigned index, minor, mig_mode, max_migs;
    unsigned gi, ci;
    char uuid[96];
    char bus_id[32];
    char name[96];
    struct device *parent;
    struct device *migs[MAX_MIGS];
};

/* pynvml's nvmlPciInfo_t (nvmlDeviceGetPciInfo_v3). */
typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

static struct device gpus[MAX_GPUS];
static struct device migs[MAX_GPUS * MAX_MIGS];
static unsigned gpu_count, mig_count;
static char driver_version[80];
static int cuda_version = 12040;
static int initialised;

static int copy_out(char *dst, unsigned len, const char *src) {
    if (strlen(src) + 1 > len)
        return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(dst, src);
    return NVML_SUCCESS;
}

static int load_inventory(void) {
    Dl_info info;
    char path[4096], line[512];
    if (!dladdr((void *)load_inventory, &info) || !info.dli_fname)
        return NVML_ERROR_UNKNOWN;
    snprintf(path, sizeof path, "%s", info.dli_fname);
    char *dir = dirname(path);
    char file[4200];
    snprintf(file, sizeof file, "%s/fakenvml-inventory.txt", dir);
    FILE *f = fopen(file, "r");
    if (!f)
        return NVML_ERROR_UNKNOWN;
    gpu_count = mig_count = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "driver ", 7)) {
            snprintf(driver_version, sizeof driver_version, "%s", line + 7);
        } else if (!strncmp(line, "cuda ", 5)) {
            cuda_version = atoi(line + 5);
        } else if (!strncmp(line, "gpu ", 4) && gpu_count < MAX_GPUS) {
            struct device *d = &gpus[gpu_count];
            int used = 0;
            memset(d, 0, sizeof *d);
            if (sscanf(line + 4, "%u %u %95s %31s %u %u %n", &d->index, &d->minor, d->uuid,
                       d->bus_id, &d->mig_mode, &d->max_migs, &used) < 6)
                continue;
            snprintf(d->name, sizeof d->name, "%s", line + 4 + used);
            gpu_count++;
        } else if (!strncmp(line, "mig ", 4) && mig_count < MAX_GPUS * MAX_MIGS) {
            unsigned parent, slot;
            struct device *m = &migs[mig_count];
            memset(m, 0, sizeof *m);
            if (sscanf(line + 4, "%u %u %u %u %95s", &parent, &slot, &m->gi, &m->ci, m->uuid) != 5)
                continue;
            if (parent >= gpu_count || slot >= MAX_MIGS)
                continue;
            m->is_mig = 1;
            m->parent = &gpus[parent];
            gpus[parent].migs[slot] = m;
            mig_count++;
        }
    }
    fclose(f);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    int ret = load_inventory();
    if (ret == NVML_SUCCESS)
        initialised = 1;
    return ret;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    initialised = 0;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    default: return "Unknown Error";
    }
}

#define CHECK_INIT() do { if (!initialised) return NVML_ERROR_UNINITIALIZED; } while (0)
#define CHECK_ARG(p) do { if (!(p)) return NVML_ERROR_INVALID_ARGUMENT; } while (0)

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    CHECK_INIT();
    CHECK_ARG(version);
    return copy_out(version, length, driver_version);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    CHECK_INIT();
    CHECK_ARG(count);
    *count = gpu_count;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, struct device **device) {
    CHECK_INIT();
    CHECK_ARG(device);
    if (index >= gpu_count)
        return NVML_ERROR_INVALID_ARGUMENT;
    *device = &gpus[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(struct device *d, char *name, unsigned int length) {
    CHECK_INIT();
    CHECK_ARG(d && name);
    return copy_out(name, length, d->is_mig ? d->parent->name : d->name);
}

nvmlReturn_t nvmlDeviceGetUUID(struct device *d, char *uuid, unsigned int length) {
    CHECK_INIT();
    CHECK_ARG(d && uuid);
    return copy_out(uuid, length, d->uuid);
}

nvmlReturn_t nvmlDeviceGetMinorNumber(struct device *d, unsigned int *minor) {
    CHECK_INIT();
    CHECK_ARG(d && minor);
    if (d->is_mig)
        return NVML_ERROR_NOT_SUPPORTED;
    *minor = d->minor;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(struct device *d, nvmlPciInfo_t *pci) {
    CHECK_INIT();
    CHECK_ARG(d && pci);
    const struct device *g = d->is_mig ? d->parent : d;
    memset(pci, 0, sizeof *pci);
    snprintf(pci->busId, sizeof pci->busId, "%s", g->bus_id);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "%.15s", g->bus_id);
    sscanf(g->bus_id, "%x:%x:%x", &pci->domain, &pci->bus, &pci->device);
    pci->pciDeviceId = 0x20b010de;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(struct device *d, unsigned int *current, unsigned int *pending) {
    CHECK_INIT();
    CHECK_ARG(d && current && pending);
    if (d->is_mig)
        return NVML_ERROR_NOT_SUPPORTED;
    *current = *pending = d->mig_mode;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(struct device *d, unsigned int *count) {
    CHECK_INIT();
    CHECK_ARG(d && count);
    *count = d->is_mig ? 0 : d->max_migs;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(struct device *d, unsigned int index,
                                                 struct device **mig) {
    CHECK_INIT();
    CHECK_ARG(d && mig);
    if (d->is_mig || index >= MAX_MIGS || index >= d->max_migs)
        return NVML_ERROR_INVALID_ARGUMENT;
    if (!d->mig_mode || !d->migs[index])
        return NVML_ERROR_NOT_FOUND;
    *mig = d->migs[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(struct device *d, unsigned int *id) {
    CHECK_INIT();
    CHECK_ARG(d && id);
    if (!d->is_mig)
        return NVML_ERROR_NOT_SUPPORTED;
    *id = d->gi;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(struct device *d, unsigned int *id) {
    CHECK_INIT();
    CHECK_ARG(d && id);
    if (!d->is_mig)
        return NVML_ERROR_NOT_SUPPORTED;
    *id = d->ci;
    return NVML_SUCCESS;
}

/* For the jit-cdi host inventory (issue #14): the CUDA version the driver
 * supports, each GPU's compute capability (8.0, an A100's) and brand. */
nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version) {
    CHECK_INIT();
    CHECK_ARG(version);
    *version = cuda_version;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    return nvmlSystemGetCudaDriverVersion(version);
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(struct device *d, int *major, int *minor) {
    CHECK_INIT();
    CHECK_ARG(d && major && minor);
    *major = 8;
    *minor = 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetBrand(struct device *d, int *type) {
    CHECK_INIT();
    CHECK_ARG(d && type);
    *type = 2; /* NVML_BRAND_TESLA */
    return NVML_SUCCESS;
}
