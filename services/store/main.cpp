#include "switchboard/store/service.hpp"

int main(int argc, char** argv) {
  return sb::store::main(argc, argv);
}
