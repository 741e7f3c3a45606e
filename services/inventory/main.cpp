#include "switchboard/shop/inventory.hpp"

int main(int argc, char** argv) {
  return sb::sdk::run("inventory", sb::shop::inventory::extra_keys(),
                      sb::shop::inventory::make_plugin, argc, argv);
}
