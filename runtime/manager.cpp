#include "mpp/manager.hpp"

#include "mpp/handle_codec.hpp"

namespace mpp {

Manager::Manager(const std::string& name, std::size_t bytes, Options options)
    : seg_(detail::Segment::create(name, bytes,
                                   {.mode = options.mode,
                                    .persist = options.persist,
                                    .directory_entries = options.directory_entries,
                                    .max_bytes = options.max_bytes})) {}

Manager::Manager(std::size_t bytes, Options options)
    : seg_(detail::Segment::anonymous(bytes, options.directory_entries,
                                      options.max_bytes ? options.max_bytes
                                                        : detail::Segment::auto_max_bytes(bytes, true))) {
  detail::remember_anonymous_manager(seg_);
}

Manager Manager::attach(const std::string& name) {
  return Manager(detail::Segment::attach(name));
}

}  // namespace mpp
