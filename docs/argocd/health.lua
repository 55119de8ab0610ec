-- Argo CD health check for wft.dev/WhisperFineTune (see docs/gitops.md).
-- Healthy when the run of the current spec succeeded, Degraded when it failed, Progressing
-- otherwise (pending, queued or suspended, preparing, training, or a status that still
-- describes an older generation of the spec).
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the resource"
  return hs
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile generation " .. tostring(generation)
  return hs
end

-- The Failed condition's reason names the cause (OOMKilled, BadData, ...).
local function failed_reason()
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type == "Failed" and condition.status == "True" then
        return condition.reason
      end
    end
  end
  return nil
end

local message = status.message or ""
if status.phase == "Succeeded" then
  hs.status = "Healthy"
  if status.adapterUri ~= nil then
    message = "Adapter at " .. status.adapterUri
  end
elseif status.phase == "Failed" then
  hs.status = "Degraded"
  local reason = failed_reason()
  if reason ~= nil then
    message = reason .. ": " .. message
  end
else
  hs.status = "Progressing"
  local prefix = status.phase
  if status.progress ~= nil and status.progress.percent ~= nil then
    prefix = prefix .. " " .. tostring(math.floor(status.progress.percent)) .. "%"
  end
  if message ~= "" then
    message = prefix .. ": " .. message
  else
    message = prefix
  end
end
hs.message = message
return hs
