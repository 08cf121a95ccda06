-- Argo CD health check for DetectionPolicy and ModelRoute (detection.adaptive.io).
-- Lua 5.1 (Argo CD runs gopher-lua). `obj` is the live object; the result is `hs`.
--   Progressing: no status yet, or the operator has not evaluated the current generation.
--   Degraded:    the spec is invalid (InvalidSpec), the output could not be written (OutputFailed),
--                or the route has no healthy model to fail over to (Degraded=True).
--   Healthy:     Ready=True for the current generation.
local hs = {}

local function find(conditions, wanted)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function current(condition, generation)
  return condition ~= nil and (generation == nil or condition.observedGeneration == generation)
end

local generation = obj.metadata and obj.metadata.generation
local status = obj.status
local conditions = status and status.conditions
local observed = status and status.observedGeneration or 0

if generation ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to evaluate generation " .. tostring(generation) ..
    " (last evaluated: " .. tostring(observed) .. ")"
  return hs
end

local ready = find(conditions, "Ready")
if not current(ready, generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator's first evaluation"
  return hs
end

local invalid = find(conditions, "InvalidSpec")
if current(invalid, generation) and invalid.status == "True" then
  hs.status = "Degraded"
  hs.message = "Invalid spec: " .. (invalid.message or "")
  return hs
end
if ready.status == "False" and (ready.reason == "InvalidSpec" or ready.reason == "OutputFailed") then
  hs.status = "Degraded"
  hs.message = ready.reason .. ": " .. (ready.message or "")
  return hs
end
local degraded = find(conditions, "Degraded")
if current(degraded, generation) and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = (degraded.reason or "Degraded") .. ": " .. (degraded.message or "")
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end
hs.status = "Progressing"
hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
return hs
