#include "switchboard/identity/identity.hpp"

int main(int argc, char** argv) {
  return sb::sdk::run("identity", sb::identity::extra_keys(), sb::identity::make_plugin, argc,
                      argv);
}
