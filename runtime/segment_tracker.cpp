#include "mpp/detail/segment_tracker.hpp"

#include <fcntl.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "mpp/detail/segment_format.hpp"
#include "mpp/errors.hpp"

extern char** environ;

namespace mpp::detail {
namespace {

// glibc's shm_open() and shm_unlink() work in this directory; the tracker names files by
// path because it must not call anything that is not async-signal-safe (see below).
constexpr char SHM_DIR[] = "/dev/shm/";
constexpr int SWEEP_MS = 100;       // how often a segment whose creator is gone is re-checked
constexpr int REPLY_TIMEOUT_MS = 5000;
constexpr int START_TIMEOUT_MS = 10000;
constexpr int TRACKER_FD = 3;       // the tracker's end of the socket, in the tracker
constexpr char TRACKER_ARGV0[] = "mpp-segment-tracker";
constexpr char TRACKER_ENV[] = "MPP_SEGMENT_TRACKER_FD";
constexpr char TRACKER_COMM[] = "mpp-tracker";

// One message, creator -> tracker (create, release) or tracker -> creator (ready, and the
// replies: created, with the new file's descriptor attached unless `error`; removed, kept or
// unknown). SOCK_SEQPACKET keeps each one whole.
enum class Op : std::uint32_t {
  create = 1, release = 2, created = 3, removed = 4, kept = 5, unknown = 6, ready = 7
};

struct Message {
  Op op;
  std::int32_t pid;     // ready: the tracker's pid
  std::uint32_t mode;   // create: the file's mode
  std::int32_t error;   // created: errno of the failed open, or 0
  char name[MAX_SEGMENT_NAME + 1];
};

// ---- the tracker process ----
//
// Everything from here to the creator's side runs in a process forked from a possibly
// multithreaded one, which may keep running there without exec: only async-signal-safe
// calls (system calls, mem*/str*), no malloc, no locks, no exceptions, no stdio.

struct Entry {
  std::uint64_t dev, ino;  // identity of the file: a later file of the same name is not ours
  bool released;           // the creator released it while others still used it
  char path[sizeof SHM_DIR + MAX_SEGMENT_NAME];
};

// Entries live in an anonymous mapping grown by doubling (mmap is a bare system call).
struct Table {
  Entry* e = nullptr;
  std::size_t n = 0, cap = 0;

  Entry* find(const char* path) {
    for (std::size_t i = 0; i < n; ++i) {
      if (std::strcmp(e[i].path, path) == 0) return &e[i];
    }
    return nullptr;
  }
  Entry* add() {
    if (n == cap) {
      std::size_t grown = cap ? cap * 2 : 64;
      void* p = mmap(nullptr, grown * sizeof(Entry), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return nullptr;
      if (n) std::memcpy(p, e, n * sizeof(Entry));
      if (e) munmap(e, cap * sizeof(Entry));
      e = static_cast<Entry*>(p);
      cap = grown;
    }
    return &e[n++];
  }
  void erase(Entry* x) {
    *x = e[n - 1];
    --n;
  }
};

void make_path(char* out, const char* name) {
  std::memcpy(out, SHM_DIR, sizeof SHM_DIR - 1);
  std::size_t len = strnlen(name, MAX_SEGMENT_NAME);
  std::memcpy(out + sizeof SHM_DIR - 1, name, len);
  out[sizeof SHM_DIR - 1 + len] = '\0';
}

enum class Verdict { removed, busy, not_ours };

// Removes the entry's segment if no process has it open or mapped. The kernel counts the
// open files of an inode, and every mapping holds its file open; a write lease is granted
// only when the caller's descriptor is the only one, and while it is held an open() by
// anyone else waits. So "lease granted, then unlink under it" cannot remove a segment that
// someone is using or is just opening (an attacher that was waiting then finds st_nlink 0
// and reports the segment gone). The lease is dropped at once: no opener waits longer.
Verdict settle(const Entry& e) {
  int fd = open(e.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno == EWOULDBLOCK ? Verdict::busy : Verdict::not_ours;
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_dev != e.dev || st.st_ino != e.ino) {
    close(fd);
    return Verdict::not_ours;  // removed (mpp-inspect rm) and maybe made again by someone
  }
  // persist() may have been called in any process: the header is the truth.
  std::uint32_t persist = 0;
  if (pread(fd, &persist, sizeof persist, offsetof(SegmentHeader, persist)) ==
          static_cast<ssize_t>(sizeof persist) &&
      persist != 0) {
    close(fd);
    return Verdict::not_ours;
  }
  Verdict v = Verdict::removed;
  if (fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
    unlink(e.path);
    fcntl(fd, F_SETLEASE, F_UNLCK);
  } else if (errno == EAGAIN) {
    v = Verdict::busy;
  } else {
    // Leases are unavailable (fs.leases-enable=0, a filesystem without them): remove it now,
    // as before the tracker existed; processes that map it keep their mapping.
    unlink(e.path);
  }
  close(fd);
  return v;
}

// Makes the segment's file for the creator (O_EXCL, as shm_open does it) and hands it over
// through the socket. The tracker made it, so it tracks it before the creator could die
// with it: there is no moment at which a kill of the creator leaks the file. If the creator
// dies before it receives the descriptor, the one in flight is closed with the socket.
void create_for_creator(Table& table, int fd, const char* path, std::uint32_t mode) {
  Message reply{};
  reply.op = Op::created;
  int file = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
  struct stat st {};
  Entry* e = nullptr;
  if (file < 0) {
    reply.error = errno;
  } else if (fstat(file, &st) != 0 || (e = table.find(path), !e && !(e = table.add()))) {
    reply.error = errno ? errno : ENOMEM;
    unlink(path);
    close(file);
    file = -1;
  } else {
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->released = false;
    std::memcpy(e->path, path, sizeof e->path);
  }
  iovec io{&reply, sizeof reply};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  if (file >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &file, sizeof file);
  }
  sendmsg(fd, &msg, MSG_NOSIGNAL);
  if (file >= 0) close(file);  // the creator holds it now (or it died: then no one does)
}

std::int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

[[noreturn]] void run_tracker(int fd) {
  Table table;
  Message m{};
  bool creator_gone = false;
  std::int64_t next_sweep = 0;
  for (;;) {
    bool watching = creator_gone;
    for (std::size_t i = 0; i < table.n && !watching; ++i) watching = table.e[i].released;
    if (watching && now_ms() >= next_sweep) {
      for (std::size_t i = table.n; i-- > 0;) {
        Entry& e = table.e[i];
        if ((creator_gone || e.released) && settle(e) != Verdict::busy) table.erase(&e);
      }
      next_sweep = now_ms() + SWEEP_MS;
      watching = creator_gone;
      for (std::size_t i = 0; i < table.n && !watching; ++i) watching = table.e[i].released;
    }
    if (creator_gone && table.n == 0) _exit(0);  // no daemon outlives the last user
    int timeout = watching ? static_cast<int>(std::max<std::int64_t>(0, next_sweep - now_ms())) : -1;
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, creator_gone ? 0 : 1, timeout);
    if (r <= 0 || creator_gone) continue;  // a sweep is due, or EINTR
    ssize_t got = recv(fd, &m, sizeof m, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) {
      // End of file: the creator is gone, however it ended (its end has no other copy).
      close(fd);
      creator_gone = true;
      next_sweep = 0;
      continue;
    }
    if (got != static_cast<ssize_t>(sizeof m)) continue;
    m.name[MAX_SEGMENT_NAME] = '\0';
    char path[sizeof SHM_DIR + MAX_SEGMENT_NAME];
    make_path(path, m.name);
    Entry* e = table.find(path);
    if (m.op == Op::create) {
      create_for_creator(table, fd, path, m.mode);
    } else if (m.op == Op::release) {
      Message reply{};
      reply.op = Op::unknown;
      if (e) {
        Verdict v = settle(*e);
        if (v == Verdict::busy) {
          e->released = true;
          reply.op = Op::kept;
        } else {
          table.erase(e);
          reply.op = Op::removed;
        }
      }
      send(fd, &reply, sizeof reply, MSG_NOSIGNAL);
    }
  }
}

// Unmaps every shared mapping inherited from the creator (segments, memfd and anonymous
// shared memory): the tracker must not be what keeps a segment's memory alive. Reads
// /proc/self/maps with read() into a stack buffer, then unmaps what it found.
void unmap_shared_mappings() {
  for (int round = 0; round < 1000; ++round) {
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    constexpr int MAX_FOUND = 128;
    std::uintptr_t lo[MAX_FOUND], hi[MAX_FOUND];
    int found = 0;
    char buf[8192];
    std::size_t have = 0;
    for (;;) {
      ssize_t r = read(fd, buf + have, sizeof buf - have);
      if (r <= 0) break;
      have += static_cast<std::size_t>(r);
      std::size_t start = 0;
      for (std::size_t i = 0; i < have; ++i) {
        if (buf[i] != '\n') continue;
        // "lo-hi perms offset dev inode path": shared mappings have 's' as their 4th perm.
        const char* s = buf + start;
        std::uintptr_t a = 0, b = 0;
        auto hex = [](const char*& c, std::uintptr_t& v) {
          for (;; ++c) {
            int d = *c >= '0' && *c <= '9' ? *c - '0' : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10 : -1;
            if (d < 0) return;
            v = v * 16 + static_cast<std::uintptr_t>(d);
          }
        };
        hex(s, a);
        if (*s == '-') {
          ++s;
          hex(s, b);
          if (*s == ' ' && i - start > static_cast<std::size_t>(s - (buf + start)) + 4 &&
              s[4] == 's' && found < MAX_FOUND) {
            lo[found] = a;
            hi[found] = b;
            ++found;
          }
        }
        start = i + 1;
      }
      std::memmove(buf, buf + start, have - start);
      have -= start;
      if (have == sizeof buf) have = 0;  // a line longer than the buffer: not a mapping we want
    }
    close(fd);
    for (int i = 0; i < found; ++i) munmap(reinterpret_cast<void*>(lo[i]), hi[i] - lo[i]);
    if (found < MAX_FOUND) return;
  }
}

// The tracker's setup, in the grandchild of the creator (it is in a session of its own, so
// the terminal's Ctrl-C, which goes to the creator's process group, does not reach it;
// its parent has exited, so it is never the creator's child nor its zombie).
[[noreturn]] void become_tracker(int keep, int drop, char* const* argv, char* const* envp) {
  close(drop);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);  // no handler of the creator's
  // Signals meant for the creator's group or session must not end the tracker before its
  // work is done (a `kill -TERM` of a whole cgroup, a hangup). SIGKILL still does.
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGIO, SIGTSTP, SIGTTIN, SIGTTOU}) {
    sigaction(sig, &ign, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  if (chdir("/") != 0) {
    // not fatal: the creator's working directory just stays busy until the tracker ends
  }
  // Keep nothing of the creator's: not its terminal, not a pipe whose end of file someone
  // waits for (ctest waits for its test's stdout), not a segment's descriptor.
  int k = fcntl(keep, F_DUPFD, 10);
  if (k < 0) _exit(1);
  int null = open("/dev/null", O_RDWR);
  for (int i = 0; i < 3 && null >= 0; ++i) dup2(null, i);
  if (dup2(k, TRACKER_FD) != TRACKER_FD) _exit(1);
  if (close_range(TRACKER_FD + 1, ~0U, 0) != 0) {
    for (int i = TRACKER_FD + 1; i < 65536; ++i) close(i);
  }
  prctl(PR_SET_NAME, TRACKER_COMM, 0, 0, 0);
  if (argv) execve("/proc/self/exe", argv, envp);  // sheds the creator's memory; see entry below
  unmap_shared_mappings();
  run_tracker(TRACKER_FD);
}

// The re-executed tracker starts here, before main() and before the program's own static
// constructors (priority 101 runs first within libmpp's image, which is the main program:
// re-execution is only chosen then). Anything else returns at once.
__attribute__((constructor(101))) void segment_tracker_entry(int argc, char** argv, char**) {
  if (argc < 1 || !argv || !argv[0] || std::strcmp(argv[0], TRACKER_ARGV0) != 0) return;
  const char* fd = std::getenv(TRACKER_ENV);
  if (!fd || std::strcmp(fd, "3") != 0) return;
  prctl(PR_SET_NAME, TRACKER_COMM, 0, 0, 0);
  run_tracker(TRACKER_FD);
}

// ---- the creator's side ----

struct CreatorState {
  std::mutex m;
  int fd = -1;       // our end of the socket (O_CLOEXEC; closed in forked children)
  pid_t pid = 0;     // the tracker
  pid_t owner = 0;   // the process that started it
  uid_t euid = 0;    // the credentials it has, and so the owner of the files it makes
  gid_t egid = 0;
  bool reexec = true;
};
CreatorState g;  // constant-initialised, and trivially destructible in effect: usable at exit

void atfork_prepare() { g.m.lock(); }
void atfork_parent() { g.m.unlock(); }
// A forked child holds no copy of the creator's end: the tracker's end of file must mean
// "the creator is gone", not "the creator and every child it ever forked are gone". The
// child is then just a process that maps the segments it inherited.
void atfork_child() {
  if (g.fd >= 0) close(g.fd);
  g.fd = -1;
  g.pid = 0;
  g.owner = 0;
  g.m.unlock();
}

void drop_tracker() {
  if (g.fd >= 0) close(g.fd);
  g.fd = -1;
  g.pid = 0;
}

// Re-executing is possible when the program that /proc/self/exe names contains this code,
// so that the constructor above runs first. The first object dl_iterate_phdr reports is
// the main program.
bool tracker_in_main_program() {
  struct Probe {
    ElfW(Addr) addr;
    bool inside;
  } probe{reinterpret_cast<ElfW(Addr)>(&segment_tracker_entry), false};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto* p = static_cast<Probe*>(data);
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const auto& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          ElfW(Addr) lo = info->dlpi_addr + ph.p_vaddr;
          if (p->addr >= lo && p->addr < lo + ph.p_memsz) p->inside = true;
        }
        return 1;
      },
      &probe);
  return probe.inside;
}

// Forks the tracker (with g.m held). Everything the children use is made before the fork:
// after it they may not allocate. _Fork runs no atfork handlers (ours would deadlock on
// g.m), which is fine since neither child returns to the program. The creator does not wait
// for the tracker to be up: the socket exists before the fork, so what the creator sends,
// and its end of file, wait in the socket for the tracker whenever it gets to read them.
void start_tracker() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(atfork_prepare, atfork_parent, atfork_child); });
  drop_tracker();
  std::vector<std::string> env_store;
  for (char** e = environ; e && *e; ++e) {
    if (std::strncmp(*e, TRACKER_ENV, sizeof TRACKER_ENV - 1) != 0) env_store.emplace_back(*e);
  }
  env_store.push_back(std::string(TRACKER_ENV) + "=" + std::to_string(TRACKER_FD));
  std::vector<char*> envp;
  for (auto& s : env_store) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string argv0 = TRACKER_ARGV0;
  char* argv[] = {argv0.data(), nullptr};
  const bool reexec = g.reexec && tracker_in_main_program();

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    throw_os_error(errno, "socketpair (starting the segment tracker)");
  }
  pid_t mid = _Fork();
  if (mid < 0) {
    int e = errno;
    close(sv[0]);
    close(sv[1]);
    throw_os_error(e, "fork (starting the segment tracker)");
  }
  if (mid == 0) {
    setsid();
    pid_t t = _Fork();
    if (t < 0) _exit(1);
    if (t > 0) {
      // The tracker's pid, from its end of the socket to the creator's.
      Message ready{};
      ready.op = Op::ready;
      ready.pid = t;
      _exit(send(sv[1], &ready, sizeof ready, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof ready) ? 0 : 1);
    }
    become_tracker(sv[1], sv[0], reexec ? argv : nullptr, envp.data());
  }
  close(sv[1]);
  int status = 0;
  while (waitpid(mid, &status, 0) < 0 && errno == EINTR) {
  }  // ECHILD too: SIGCHLD ignored, or the program's own handler reaped it
  Message m{};
  pollfd p{sv[0], POLLIN, 0};
  int r;
  do r = poll(&p, 1, START_TIMEOUT_MS);  // at once, unless the middle process was reaped elsewhere
  while (r < 0 && errno == EINTR);
  if (r == 1 && recv(sv[0], &m, sizeof m, 0) == static_cast<ssize_t>(sizeof m) && m.op == Op::ready) {
    g.fd = sv[0];
    g.pid = m.pid;
    g.owner = getpid();
    g.euid = geteuid();
    g.egid = getegid();
    return;
  }
  close(sv[0]);
  throw OSError(EAGAIN, "could not start the segment tracker (the process that removes this "
                        "process's segments from /dev/shm when it ends): fork failed; see ulimit -u");
}

Message message(Op op, const std::string& name) {
  Message m{};
  m.op = op;
  std::memcpy(m.name, name.data(), std::min(name.size(), MAX_SEGMENT_NAME));
  return m;
}

// The tracker's reply to the request just sent (with g.m held), and the descriptor that
// came with it, if any. False when none came within REPLY_TIMEOUT_MS.
bool receive(Message& reply, int* file) {
  pollfd p{g.fd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, REPLY_TIMEOUT_MS);
  while (r < 0 && errno == EINTR);
  if (r != 1) return false;
  iovec io{&reply, sizeof reply};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &io;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  if (recvmsg(g.fd, &msg, MSG_CMSG_CLOEXEC) != static_cast<ssize_t>(sizeof reply)) return false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && file) {
      std::memcpy(file, CMSG_DATA(c), sizeof(int));
    }
  }
  return true;
}

}  // namespace

int open_tracked_segment(const std::string& name, unsigned mode) {
  Message m = message(Op::create, name);
  m.mode = mode;
  std::lock_guard lock(g.m);
  for (int attempt = 0;; ++attempt) {
    // A process that changed its credentials since gets a tracker with its new ones, so
    // that its files are its own (the old tracker still watches the files it made).
    if (g.fd < 0 || g.owner != getpid() || g.euid != geteuid() || g.egid != getegid()) {
      start_tracker();
    }
    Message reply{};
    int file = -1;
    if (send(g.fd, &m, sizeof m, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof m) &&
        receive(reply, &file) && reply.op == Op::created) {
      if (reply.error != 0) {
        errno = reply.error;
        return -1;
      }
      if (file >= 0) return file;
    }
    int e = errno ? errno : EPROTO;
    if (file >= 0) close(file);
    // It was killed or is stuck: let it go (a stuck one removes what it made once unused)
    // and ask a new one.
    drop_tracker();
    if (attempt == 1) throw_os_error(e, "asking the segment tracker to create '" + name + "'");
  }
}

void release_created_segment(const std::string& name) noexcept {
  {
    std::lock_guard lock(g.m);
    if (g.fd >= 0 && g.owner == getpid()) {
      Message m = message(Op::release, name);
      Message reply{};
      if (send(g.fd, &m, sizeof m, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof m) &&
          receive(reply, nullptr)) {
        if (reply.op == Op::removed || reply.op == Op::kept) return;
      } else {
        // No answer: a tracker that is gone or stuck is let go (a stuck one then sees end of
        // file and removes what it tracked once unused), and this segment removed here.
        drop_tracker();
      }
    }
  }
  char path[MAX_SEGMENT_NAME + 2] = "/";
  std::memcpy(path + 1, name.data(), std::min(name.size(), MAX_SEGMENT_NAME));
  shm_unlink(path);
}

pid_t segment_tracker_pid() noexcept {
  std::lock_guard lock(g.m);
  return g.owner == getpid() ? g.pid : 0;
}

void set_segment_tracker_reexec(bool reexec) noexcept {
  std::lock_guard lock(g.m);
  g.reexec = reexec;
}

}  // namespace mpp::detail
