-- Argo CD health check for wft.dev/WhisperFineTune (see docs/gitops.md).
-- Healthy when the run of the current spec succeeded; Degraded when it failed, or while its
-- pod cannot start (an image that cannot be pulled, a missing Secret, a runtime that cannot
-- start it: the run waits for a person); Progressing otherwise (pending, queued or suspended,
-- preparing, training, retrying, or a status that still describes an older spec).
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

local function condition(type)
  if status.conditions ~= nil then
    for _, c in ipairs(status.conditions) do
      if c.type == type then
        return c
      end
    end
  end
  return nil
end

-- Running=False reasons of a pod that cannot start until someone fixes something.
local stuck = {
  ImagePullFailed = true,
  CreateContainerConfigError = true,
  ContainerCannotStart = true,
  CrashLoopBackOff = true,
}

local trainer = status.trainer or {}
local message = status.message or ""
local failed = condition("Failed")
local running = condition("Running")
if status.phase == "Succeeded" then
  hs.status = "Healthy"
  if trainer.adapterUri ~= nil then
    message = "Adapter at " .. trainer.adapterUri
  end
elseif status.phase == "Failed" then
  -- The Failed condition's reason names the cause (OOMKilled, BadData, ...).
  hs.status = "Degraded"
  if failed ~= nil and failed.status == "True" and failed.reason ~= nil then
    message = failed.reason .. ": " .. message
  end
elseif running ~= nil and running.status == "False" and stuck[running.reason] then
  hs.status = "Degraded"
  message = running.reason .. ": " .. message
else
  hs.status = "Progressing"
  local prefix = status.phase
  -- Progress is this run's only while it trains (before, it may be an earlier run's).
  local progress = trainer.progress
  if status.phase == "Training" and progress ~= nil and progress.percent ~= nil then
    prefix = prefix .. " " .. tostring(math.floor(progress.percent)) .. "%"
  end
  if message ~= "" then
    message = prefix .. ": " .. message
  else
    message = prefix
  end
end
hs.message = message
return hs
