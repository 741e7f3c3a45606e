#include "switchboard/registry/projection.hpp"

#include "switchboard/registry/read_model.hpp"

namespace sb::registry {
namespace {

TableNames names_of(const projections::Tables& t) {
  return TableNames{[t](std::string_view logical) { return t(logical); }};
}

class RegistryProjection : public projections::Projection {
 public:
  std::string_view name() const override { return kProjectionName; }
  std::vector<std::string> event_types() const override { return read_model_event_types(); }
  std::vector<std::string> tables() const override { return read_model_tables(); }
  std::vector<std::string> schema(const projections::Tables& t) const override {
    return read_model_schema(names_of(t));
  }
  events::HandleResult apply(pg::Transaction& tx, const projections::Tables& t,
                             const events::Event& event) override {
    return apply_event(tx, names_of(t), event);
  }
};

}  // namespace

std::shared_ptr<projections::Projection> make_registry_projection() {
  return std::make_shared<RegistryProjection>();
}

}  // namespace sb::registry
