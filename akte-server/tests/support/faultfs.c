/*
 * faultfs: an LD_PRELOAD shim for akte's fault tests (akte-server/tests/faults.rs builds
 * it with the system's C compiler). It stands in for the device-mapper targets
 * (dm-error, dm-flakey) this sandbox's kernel lacks: the process under test gets the
 * errors a failing disk gives, from the C library calls it makes, only for files under
 * one directory.
 *
 * Two modes, by environment variable (the shim does nothing without them):
 *
 *   FAULTFS_PREFIX=/abs/dir      the files concerned: this directory and below
 *   FAULTFS_EIO_WHILE=/abs/file  while this file exists, every write and flush of a file
 *                                under the prefix fails with EIO (write, pwrite, writev,
 *                                pwritev, fsync, fdatasync, sync_file_range); removing
 *                                the file ends the fault
 *   FAULTFS_FORBID_LOG=/abs/file every call that would change anything under the prefix
 *                                (open for writing or creating, writes and flushes,
 *                                rename, unlink, mkdir, rmdir, link, symlink, truncate,
 *                                chmod, utimes, an exclusive flock) fails with EROFS and
 *                                appends one line naming the call and the path here
 *
 * Only what the process does through the C library is seen; that is how Rust's standard
 * library, and so akte and sled, reach the kernel.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

static int under_prefix(const char *path) {
    const char *prefix = getenv("FAULTFS_PREFIX");
    if (!prefix || !path) return 0;
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

/* The path of `fd`, or "" (sockets, pipes). */
static void fd_path(int fd, char *out, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    out[n > 0 ? n : 0] = '\0';
}

/* `path` relative to `dirfd`, made absolute where it can be. */
static void at_path(int dirfd, const char *path, char *out, size_t size) {
    if (!path) {
        out[0] = '\0';
    } else if (path[0] == '/' || dirfd == AT_FDCWD) {
        if (path[0] == '/' || !getcwd(out, size)) {
            snprintf(out, size, "%s", path);
        } else {
            size_t n = strlen(out);
            snprintf(out + n, size - n, "/%s", path);
        }
    } else {
        fd_path(dirfd, out, size);
        size_t n = strlen(out);
        snprintf(out + n, size - n, "/%s", path);
    }
}

/* Forbid mode: logs `call` on `path` and says to fail with EROFS. */
static int forbidden(const char *call, const char *path) {
    const char *log = getenv("FAULTFS_FORBID_LOG");
    if (!log || !under_prefix(path)) return 0;
    int saved = errno;
    int fd = REAL(open)(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0) {
        char line[PATH_MAX + 64];
        int n = snprintf(line, sizeof line, "%s %s\n", call, path);
        if (n > 0) {
            ssize_t ignored = REAL(write)(fd, line, (size_t)n);
            (void)ignored;
        }
        close(fd);
    }
    errno = saved;
    return 1;
}

/* EIO mode: whether a write or flush of `fd` fails now. */
static int failing(int fd) {
    const char *trigger = getenv("FAULTFS_EIO_WHILE");
    if (!trigger) return 0;
    struct stat st;
    if (stat(trigger, &st) != 0) return 0;
    char path[PATH_MAX];
    fd_path(fd, path, sizeof path);
    return under_prefix(path);
}

/* A write or flush of `fd`: fails by the mode in force. */
static int refuse_fd(const char *call, int fd) {
    if (failing(fd)) {
        errno = EIO;
        return 1;
    }
    if (getenv("FAULTFS_FORBID_LOG")) {
        char path[PATH_MAX];
        fd_path(fd, path, sizeof path);
        if (forbidden(call, path)) {
            errno = EROFS;
            return 1;
        }
    }
    return 0;
}

static int refuse_path(const char *call, const char *path) {
    if (forbidden(call, path)) {
        errno = EROFS;
        return 1;
    }
    return 0;
}

static int refuse_at(const char *call, int dirfd, const char *path) {
    if (!getenv("FAULTFS_FORBID_LOG")) return 0;
    char full[PATH_MAX];
    at_path(dirfd, path, full, sizeof full);
    return refuse_path(call, full);
}

#define WRITES(flags) (((flags) & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0 || ((flags) & O_TMPFILE) == O_TMPFILE)
#define MODE_ARG(flags, mode)                                                    \
    do {                                                                         \
        if ((flags) & O_CREAT || ((flags) & O_TMPFILE) == O_TMPFILE) {           \
            va_list ap;                                                          \
            va_start(ap, flags);                                                 \
            mode = va_arg(ap, mode_t);                                           \
            va_end(ap);                                                          \
        }                                                                        \
    } while (0)

int open(const char *path, int flags, ...) {
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    if (WRITES(flags) && refuse_at("open", AT_FDCWD, path)) return -1;
    return REAL(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    if (WRITES(flags) && refuse_at("open", AT_FDCWD, path)) return -1;
    return REAL(open64)(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    if (WRITES(flags) && refuse_at("openat", dirfd, path)) return -1;
    return REAL(openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    if (WRITES(flags) && refuse_at("openat", dirfd, path)) return -1;
    return REAL(openat64)(dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode) {
    if (refuse_at("creat", AT_FDCWD, path)) return -1;
    return REAL(creat)(path, mode);
}

int creat64(const char *path, mode_t mode) {
    if (refuse_at("creat", AT_FDCWD, path)) return -1;
    return REAL(creat64)(path, mode);
}

ssize_t write(int fd, const void *buf, size_t n) {
    if (refuse_fd("write", fd)) return -1;
    return REAL(write)(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    if (refuse_fd("pwrite", fd)) return -1;
    return REAL(pwrite)(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    if (refuse_fd("pwrite", fd)) return -1;
    return REAL(pwrite64)(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    if (refuse_fd("writev", fd)) return -1;
    return REAL(writev)(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    if (refuse_fd("pwritev", fd)) return -1;
    return REAL(pwritev)(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off) {
    if (refuse_fd("pwritev", fd)) return -1;
    return REAL(pwritev64)(fd, iov, cnt, off);
}

int fsync(int fd) {
    if (refuse_fd("fsync", fd)) return -1;
    return REAL(fsync)(fd);
}

int fdatasync(int fd) {
    if (refuse_fd("fdatasync", fd)) return -1;
    return REAL(fdatasync)(fd);
}

int sync_file_range(int fd, off64_t off, off64_t n, unsigned int flags) {
    if (refuse_fd("sync_file_range", fd)) return -1;
    return REAL(sync_file_range)(fd, off, n, flags);
}

int ftruncate(int fd, off_t len) {
    if (refuse_fd("ftruncate", fd)) return -1;
    return REAL(ftruncate)(fd, len);
}

int ftruncate64(int fd, off64_t len) {
    if (refuse_fd("ftruncate", fd)) return -1;
    return REAL(ftruncate64)(fd, len);
}

int truncate(const char *path, off_t len) {
    if (refuse_at("truncate", AT_FDCWD, path)) return -1;
    return REAL(truncate)(path, len);
}

int truncate64(const char *path, off64_t len) {
    if (refuse_at("truncate", AT_FDCWD, path)) return -1;
    return REAL(truncate64)(path, len);
}

int flock(int fd, int op) {
    if ((op & LOCK_EX) && getenv("FAULTFS_FORBID_LOG")) {
        char path[PATH_MAX];
        fd_path(fd, path, sizeof path);
        if (refuse_path("flock", path)) return -1;
    }
    return REAL(flock)(fd, op);
}

int rename(const char *from, const char *to) {
    if (refuse_at("rename", AT_FDCWD, from) || refuse_at("rename", AT_FDCWD, to)) return -1;
    return REAL(rename)(from, to);
}

int renameat(int fd1, const char *from, int fd2, const char *to) {
    if (refuse_at("renameat", fd1, from) || refuse_at("renameat", fd2, to)) return -1;
    return REAL(renameat)(fd1, from, fd2, to);
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned int flags) {
    if (refuse_at("renameat2", fd1, from) || refuse_at("renameat2", fd2, to)) return -1;
    return REAL(renameat2)(fd1, from, fd2, to, flags);
}

int unlink(const char *path) {
    if (refuse_at("unlink", AT_FDCWD, path)) return -1;
    return REAL(unlink)(path);
}

int unlinkat(int dirfd, const char *path, int flags) {
    if (refuse_at("unlinkat", dirfd, path)) return -1;
    return REAL(unlinkat)(dirfd, path, flags);
}

int rmdir(const char *path) {
    if (refuse_at("rmdir", AT_FDCWD, path)) return -1;
    return REAL(rmdir)(path);
}

int mkdir(const char *path, mode_t mode) {
    if (refuse_at("mkdir", AT_FDCWD, path)) return -1;
    return REAL(mkdir)(path, mode);
}

int mkdirat(int dirfd, const char *path, mode_t mode) {
    if (refuse_at("mkdirat", dirfd, path)) return -1;
    return REAL(mkdirat)(dirfd, path, mode);
}

int link(const char *from, const char *to) {
    if (refuse_at("link", AT_FDCWD, to)) return -1;
    return REAL(link)(from, to);
}

int linkat(int fd1, const char *from, int fd2, const char *to, int flags) {
    if (refuse_at("linkat", fd2, to)) return -1;
    return REAL(linkat)(fd1, from, fd2, to, flags);
}

int symlink(const char *target, const char *path) {
    if (refuse_at("symlink", AT_FDCWD, path)) return -1;
    return REAL(symlink)(target, path);
}

int chmod(const char *path, mode_t mode) {
    if (refuse_at("chmod", AT_FDCWD, path)) return -1;
    return REAL(chmod)(path, mode);
}

int fchmod(int fd, mode_t mode) {
    if (refuse_fd("fchmod", fd)) return -1;
    return REAL(fchmod)(fd, mode);
}

int utimensat(int dirfd, const char *path, const struct timespec times[2], int flags) {
    if (refuse_at("utimensat", dirfd, path)) return -1;
    return REAL(utimensat)(dirfd, path, times, flags);
}
