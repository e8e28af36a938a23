<?php
// The php-cgi child that answers and what its opcache has seen: in the master layout the children
// share the master's opcache, so a fresh child's first request is already a hit.
$s = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
echo getmypid(), " ", $s ? (int)$s['opcache_statistics']['hits'] : -1, "\n";
