// How an event that has an identity (§1.9: app, device, session, client id,
// type, name and date as sent) is recognised again: by hashes that every
// backend computes the same way, so that a deleted user's tombstones mean the
// same thing wherever the data moves (nucleon migrate). Pure; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "core/event.h"

namespace nucleon {

// The identity of an event within its session: a stable hash of its client
// id, type, name and client date (or the hash the event carries).
int64_t EventIdentHash(const Event& e);
// The part of that hash the embedded store keeps per row: 48 bits. Two
// events of one session collide with a probability of n^2 / 2^49 for n
// events: never in practice.
int64_t StoredIdent(int64_t hash);
// The identity of a deleted user's event, kept without any readable trace:
// a hash of the device, the session and StoredIdent.
int64_t TombstoneHash(std::string_view device_key, std::string_view session_key, int64_t ident);
// The tombstone hashes an event may have been deleted under: of StoredIdent
// (every release since the second), and of the whole identity hash (the
// first release).
std::array<int64_t, 2> EventTombstoneHashes(const Event& e);

}  // namespace nucleon
