// The API's resources, one file per family: each reads its parameters, asks
// the store (or the live state) and shapes the JSON. Internal to query/.
#pragma once

#include <string_view>

#include "core/http_types.h"
#include "query/api.h"
#include "query/json_writer.h"
#include "query/params.h"

namespace nucleon {

// analytics_resource.cc
HttpResponse QuickGlanceResource(const ApiDeps& deps, std::string_view app);
HttpResponse DailyResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req);
HttpResponse EventsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req,
                            bool errors);
// Nucleon's extension /analytics/errors/groups: per error name, its count,
// users, first and last time and its latest error.
HttpResponse ErrorGroupsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req);
// Nucleon's extension /analytics/sessions: per local day, the sessions that
// started on it and their mean duration.
HttpResponse SessionsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req);
HttpResponse EventPropsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req);
HttpResponse EventAttributeResource(const ApiDeps& deps, std::string_view app,
                                    const ApiRequest& req, std::string_view event,
                                    std::string_view attr);

// users_resource.cc
HttpResponse UsersResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req);
HttpResponse UserResource(const ApiDeps& deps, std::string_view app, std::string_view user);
HttpResponse SessionEventsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req,
                                   std::string_view user, std::string_view session);
void DeleteUserResource(const ApiDeps& deps, std::string_view app, std::string_view user,
                        Respond respond);
// One event in the session-events shape.
void WriteEventView(JsonWriter& w, const EventView& view);

// live_resource.cc
HttpResponse LiveEventsResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req);
HttpResponse LiveUsersCountResource(const ApiDeps& deps, std::string_view app);
HttpResponse LiveUsersResource(const ApiDeps& deps, std::string_view app);

// export_resource.cc: the app's lossless export (store/event_export.h),
// streamed, gzipped when the client accepts it.
HttpResponse ExportResource(const ApiDeps& deps, std::string_view app, const ApiRequest& req,
                            const HttpRequest& request);

inline HttpResponse JsonOk(std::string body) {
  HttpResponse r;
  r.body = std::move(body);
  return r;
}

}  // namespace nucleon
