// Python's os.fork(): fork() returns twice — 0 in the child, the child's pid in the parent.
// This is the raw system call, as os.fork() is in Python; mpp::Process wraps it.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

int main() {
  std::fflush(stdout);  // or the child would print the parent's buffered output again
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (pid == 0) {
    std::printf("I am child process %d my parents is %d\n", getpid(), getppid());
    std::fflush(stdout);
    _exit(0);
  }
  std::printf("I (%d) just created a child process (%d).\n", getpid(), pid);
  int status = 0;
  waitpid(pid, &status, 0);  // reap it: no zombie
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
