#include "switchboard/shop/notifications.hpp"

int main(int argc, char** argv) {
  return sb::sdk::run("notifications", {}, sb::shop::notifications::make_plugin, argc, argv);
}
