/*
 * mephisto.h — the umbrella header. Faust's stream-processing model in C:
 * apps, topics, agents, tables, windows; see docs/ and each module header.
 */
#ifndef MEPHISTO_H
#define MEPHISTO_H

#include "mephisto/common.h"
#include "mephisto/log.h"
#include "mephisto/conf.h"
#include "mephisto/app.h"
#include "mephisto/topic.h"
#include "mephisto/agent.h"
#include "mephisto/table.h"
#include "mephisto/sensor.h"
#include "mephisto/json.h"
#include "mephisto/jsonw.h"
#include "mephisto/record.h"
#include "mephisto/window.h"
#include "mephisto/web.h"
#include "mephisto/join.h"
#include "mephisto/services.h"
#include "mephisto/codec.h"
#include "mephisto/global.h"
#include "mephisto/rpc.h"

#endif
