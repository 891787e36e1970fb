// multi_head attention (SPEC §4). Placeholder until its issue lands.
#pragma once

#include "ruvector/config.hpp"
#include "ruvector/types.hpp"
