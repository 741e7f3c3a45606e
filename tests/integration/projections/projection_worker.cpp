// A process that runs the ledger projection over a database until it is
// killed (the kill test SIGKILLs it mid-page and starts it again).
//   projection_worker POSTGRES_URL NAME PARTITIONS PAGE_SIZE DELAY_US
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "ledger.hpp"
#include "switchboard/projections/runner.hpp"

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: projection_worker URL NAME PARTITIONS PAGE_SIZE DELAY_US\n");
    return 2;
  }
  using namespace sb;
  pg::PoolOptions po;
  po.connection.url = argv[1];
  po.connection.application_name = "projection-worker";  // the kill test looks for it
  po.max_size = 8;
  auto pool = std::make_shared<pg::Pool>(po);
  projtest::LedgerKnobs knobs;
  knobs.delay = std::chrono::microseconds(std::atoll(argv[5]));
  projections::RunnerOptions o;
  o.store = pool;
  o.partitions = std::atoi(argv[3]);
  o.page_size = static_cast<std::size_t>(std::atoll(argv[4]));
  o.poll_interval = std::chrono::milliseconds(100);
  o.retry.initial = std::chrono::milliseconds(10);
  o.owner = "worker-" + std::to_string(::getpid());
  projections::ProjectionRunner runner(projtest::ledger(argv[2], knobs), o);
  runner.start();
  std::printf("started\n");
  std::fflush(stdout);
  while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
}
