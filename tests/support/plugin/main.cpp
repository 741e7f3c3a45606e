#include "test_plugin.hpp"

int main(int argc, char** argv) {
  return sb::testplugin::main(argc, argv);
}
