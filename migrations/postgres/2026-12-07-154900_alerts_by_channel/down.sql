DROP INDEX alerts_by_channel;
