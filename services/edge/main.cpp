#include "switchboard/edge/edge.hpp"

int main(int argc, char** argv) {
  return sb::edge::main(argc, argv);
}
