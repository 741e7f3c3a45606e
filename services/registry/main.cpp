#include "switchboard/registry/service.hpp"

int main(int argc, char** argv) {
  return sb::registry::main(argc, argv);
}
