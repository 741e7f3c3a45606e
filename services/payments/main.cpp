#include "switchboard/shop/payments.hpp"

int main(int argc, char** argv) {
  return sb::sdk::run("payments", sb::shop::payments::extra_keys(), sb::shop::payments::make_plugin,
                      argc, argv);
}
