#pragma once
// A reader/writer lock that lets a waiting writer in. std::shared_mutex on
// glibc prefers readers: under a steady stream of readers (HTTP workers
// checking credentials) a writer (the identity feed applying a revocation)
// can wait without end. This one is a pthread rwlock of kind
// PREFER_WRITER_NONRECURSIVE: once a writer waits, new readers queue behind
// it. Not recursive: a thread must not take it shared twice.
// Meets the SharedMutex requirements (std::shared_lock, std::unique_lock).

#include <pthread.h>

namespace sb {

class WriterPreferringMutex {
 public:
  WriterPreferringMutex();
  ~WriterPreferringMutex();
  WriterPreferringMutex(const WriterPreferringMutex&) = delete;
  WriterPreferringMutex& operator=(const WriterPreferringMutex&) = delete;

  void lock();
  bool try_lock();
  void unlock();
  void lock_shared();
  bool try_lock_shared();
  void unlock_shared();

 private:
  pthread_rwlock_t lock_;
};

}  // namespace sb
