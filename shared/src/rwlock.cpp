#include "switchboard/shared/rwlock.hpp"

#include <cerrno>
#include <system_error>

namespace sb {

namespace {
void check(int rc, const char* what) {
  if (rc != 0) throw std::system_error(rc, std::generic_category(), what);
}
}  // namespace

WriterPreferringMutex::WriterPreferringMutex() {
  pthread_rwlockattr_t attr;
  check(pthread_rwlockattr_init(&attr), "pthread_rwlockattr_init");
  check(pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP),
        "pthread_rwlockattr_setkind_np");
  const int rc = pthread_rwlock_init(&lock_, &attr);
  pthread_rwlockattr_destroy(&attr);
  check(rc, "pthread_rwlock_init");
}

WriterPreferringMutex::~WriterPreferringMutex() {
  pthread_rwlock_destroy(&lock_);
}

void WriterPreferringMutex::lock() {
  check(pthread_rwlock_wrlock(&lock_), "pthread_rwlock_wrlock");
}

bool WriterPreferringMutex::try_lock() {
  return pthread_rwlock_trywrlock(&lock_) == 0;
}

void WriterPreferringMutex::unlock() {
  pthread_rwlock_unlock(&lock_);
}

void WriterPreferringMutex::lock_shared() {
  int rc;
  // EAGAIN: the maximum number of read locks; wait for readers to leave.
  while ((rc = pthread_rwlock_rdlock(&lock_)) == EAGAIN) {
  }
  check(rc, "pthread_rwlock_rdlock");
}

bool WriterPreferringMutex::try_lock_shared() {
  return pthread_rwlock_tryrdlock(&lock_) == 0;
}

void WriterPreferringMutex::unlock_shared() {
  pthread_rwlock_unlock(&lock_);
}

}  // namespace sb
