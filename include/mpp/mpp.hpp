// Everything mpp offers, in one include. Prefer the header of the concept you use.
#pragma once

#include "mpp/errors.hpp"
#include "mpp/serialization.hpp"
#include "mpp/repr.hpp"
#include "mpp/dict.hpp"
#include "mpp/list.hpp"
#include "mpp/manager.hpp"
#include "mpp/connection.hpp"
#include "mpp/pipe.hpp"
#include "mpp/pool.hpp"
#include "mpp/queue.hpp"
#include "mpp/process.hpp"
#include "mpp/subprocess.hpp"
#include "mpp/sync.hpp"
#include "mpp/value.hpp"
#include "mpp/array.hpp"
#include "mpp/net/manager.hpp"
#include "mpp/net/pickle.hpp"
// Not included here: mpp::redis (Queue and Dict on a Redis server) is a library of its own,
// mpp::redis, with the headers <mpp/redis/connection.hpp>, <mpp/redis/queue.hpp> and
// <mpp/redis/dict.hpp>.
