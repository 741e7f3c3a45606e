#include "switchboard/shop/orders.hpp"

int main(int argc, char** argv) {
  return sb::sdk::run("orders", sb::shop::orders::extra_keys(), sb::shop::orders::make_plugin, argc,
                      argv);
}
